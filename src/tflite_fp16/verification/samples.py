"""What the models run on: the user's arrays, checked before they are loaded, and the probes.

Calibration data comes as an ``.npz`` archive of arrays named after the inputs (or
``signature/input``), a ``.npy`` array for a model with one input, or a mapping
of arrays. An array with one axis more than its input holds several samples.
Every array's header (shape and type) is read and checked against the model's
inputs before any data is loaded:

* numeric types only (no objects, strings or records); integers for a float
  input are converted, with a note;
* the input's rank (or one more, for several samples), its fixed dimensions,
  dynamic ones of at most :data:`MAX_DIMENSION`;
* 1 to :data:`MAX_SAMPLES` samples, each of at most :data:`MAX_SAMPLE_BYTES` per input.

So a small file that declares a huge array, or a compressed one that would expand
to one, is refused in milliseconds.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NamedTuple

import numpy as np

from ..errors import InvalidInputsError
from ..text import quote
from .results import SampleKind

__all__ = [
    "MAX_DIMENSION",
    "MAX_PROBE_ELEMENTS",
    "MAX_SAMPLES",
    "MAX_SAMPLE_BYTES",
    "PROBES",
    "PROBE_SIZES",
    "InputSpec",
    "Inputs",
    "Sample",
    "SignatureSpec",
    "check_shapes",
    "given_samples",
    "load_inputs",
    "probe_samples",
    "probe_shape",
]

PROBES = ("normal", "zeros", "large")
LARGE_SCALE = 1000.0
MAX_SAMPLES = 1000
MAX_DIMENSION = 1 << 16
MAX_SAMPLE_BYTES = 1 << 28  # 256 MiB of one input of one sample
MAX_PROBE_ELEMENTS = 1 << 24  # a probe input of at most 16 M values (64 MB of float32)
#: The sizes tried, in turn, for the dynamic dimensions of the probes (without --shape).
PROBE_SIZES = tuple(1 << k for k in range(17))

Inputs = None | str | os.PathLike[str] | Mapping[str, Any]


class InputSpec(NamedTuple):
    """An input as LiteRT describes it: its name, shape signature (-1: dynamic) and NumPy type."""

    name: str
    shape: tuple[int, ...]
    dtype: str


class SignatureSpec(NamedTuple):
    """A signature (key None: the main subgraph of a model without signatures), its inputs and outputs."""

    key: str | None
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"signature {quote(self.key)}" if self.key is not None else "the model"

    def array_names(self, spec: InputSpec) -> tuple[str, ...]:
        """The names an array for input ``spec`` may have: ``signature/input``, then ``input``."""
        return (f"{self.key}/{spec.name}", spec.name) if self.key is not None else (spec.name,)


class Sample(NamedTuple):
    """One run of one signature: its feeds by input name."""

    signature: str | None
    name: str  # "inputs", "inputs[i]", or a probe's name
    kind: SampleKind
    feeds: dict[str, np.ndarray]


class _Header(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def _targets(name: str, signatures: Sequence[SignatureSpec]) -> list[tuple[SignatureSpec, InputSpec]]:
    return [(sig, spec) for sig in signatures for spec in sig.inputs if name in sig.array_names(spec)]


def _check_header(name: str, header: _Header, signatures: Sequence[SignatureSpec]) -> None:
    """Refuse an array that cannot be one of its inputs' samples, from its header alone."""
    shape, dtype = header
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InvalidInputsError(f"array {quote(name)} holds {dtype} values; give numbers (bool, integer or float)")
    for sig, spec in _targets(name, signatures):
        rank = len(spec.shape)
        if len(shape) not in (rank, rank + 1):
            raise InvalidInputsError(
                f"array {quote(name)} has shape {list(shape)}, but input {quote(spec.name)} of {sig.where} has "
                f"{rank} dimensions {list(spec.shape)} (give {rank} dimensions, or {rank + 1} for several samples)"
            )
        samples = shape[0] if len(shape) == rank + 1 else 1
        per_sample = shape[1:] if len(shape) == rank + 1 else shape
        if samples == 0 or 0 in per_sample:
            raise InvalidInputsError(f"array {quote(name)} of shape {list(shape)} is empty: give at least one sample")
        if samples > MAX_SAMPLES:
            raise InvalidInputsError(
                f"array {quote(name)} holds {samples:,} samples; at most {MAX_SAMPLES:,} are verified (take a subset)"
            )
        for axis, (want, have) in enumerate(zip(spec.shape, per_sample)):
            if want >= 0 and want != have:
                raise InvalidInputsError(
                    f"array {quote(name)} has size {have} in dimension {axis}, but input {quote(spec.name)} of "
                    f"{sig.where} has shape {list(spec.shape)}"
                )
            if want < 0 and have > MAX_DIMENSION:
                raise InvalidInputsError(
                    f"array {quote(name)} has size {have:,} in dynamic dimension {axis} of input {quote(spec.name)}; "
                    f"at most {MAX_DIMENSION:,} is verified"
                )
        sample_bytes = math.prod(per_sample) * max(dtype.itemsize, np.dtype(spec.dtype).itemsize)
        if sample_bytes > MAX_SAMPLE_BYTES:
            raise InvalidInputsError(
                f"array {quote(name)} has {sample_bytes:,} bytes per sample for input {quote(spec.name)}; "
                f"at most {MAX_SAMPLE_BYTES:,} are verified"
            )


def _read_header(handle: IO[bytes], name: str, where: str) -> _Header:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise InvalidInputsError(f"{where}: array {quote(name)} is not a readable .npy array: {error}") from None
    return _Header(tuple(int(d) for d in shape), np.dtype(dtype))


def _read_array(open_member: Callable[[], IO[bytes]], name: str, where: str) -> np.ndarray:
    try:
        with open_member() as handle:
            array = np.lib.format.read_array(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise InvalidInputsError(f"{where}: array {quote(name)} cannot be read: {error}") from None
    return np.asarray(array)


def _single_input(signatures: Sequence[SignatureSpec], path: str) -> str:
    names = {spec.name for sig in signatures for spec in sig.inputs}
    if len(names) != 1:
        raise InvalidInputsError(
            f"{quote(path)} is one array (.npy), but the model has inputs "
            f"{', '.join(quote(n) for n in sorted(names)) or '(none)'}: name one array per input in an .npz "
            f"(np.savez('inputs.npz', name=array, ...))"
        )
    return names.pop()


class LoadedInputs(NamedTuple):
    """What :func:`load_inputs` read: the arrays some input takes, notes, every array's name, and
    where they come from (for messages)."""

    arrays: dict[str, np.ndarray]
    notes: list[str]
    held: tuple[str, ...]
    where: str


def load_inputs(source: Inputs, signatures: Sequence[SignatureSpec]) -> LoadedInputs:
    """The arrays of ``source`` (an ``.npz`` or ``.npy`` path, or a mapping) by name, each checked
    against the inputs it feeds before it is loaded, and notes (arrays no input takes)."""
    notes: list[str] = []
    if source is None:
        return LoadedInputs({}, notes, (), "the inputs")
    if isinstance(source, Mapping):
        arrays = {}
        for key, value in source.items():
            name = str(key)
            if not _targets(name, signatures):
                notes.append(f"array {quote(name)} of the inputs matches no input and was not used")
                continue
            array = np.asarray(value)
            _check_header(name, _Header(array.shape, array.dtype), signatures)
            arrays[name] = array
        return LoadedInputs(arrays, notes, tuple(str(key) for key in source), "the inputs")
    path = os.fspath(source)
    where = f"inputs file {quote(path)}"
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except FileNotFoundError:
        raise InvalidInputsError(f"{where}: no such file") from None
    except OSError as error:
        raise InvalidInputsError(f"{where} cannot be read: {error.strerror or error}") from None
    if magic == b"\x93NUMPY":
        name = _single_input(signatures, path)
        with open(path, "rb") as handle:
            _check_header(name, _read_header(handle, name, where), signatures)
        return LoadedInputs({name: _read_array(lambda: open(path, "rb"), name, where)}, notes, (name,), where)
    if not magic.startswith(b"PK"):
        raise InvalidInputsError(
            f"{where} is not a readable .npz archive or .npy array (np.savez('inputs.npz', name=array) makes one)"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InvalidInputsError(f"{where} is not a readable .npz archive: {error}") from None
    with archive:
        members = {
            info.filename[: -len(".npy")]: info
            for info in archive.infolist()
            if info.filename.endswith(".npy") and not info.is_dir()
        }
        arrays = {}
        for name, info in members.items():
            if not _targets(name, signatures):
                notes.append(f"array {quote(name)} of the inputs matches no input and was not used")
                continue
            try:
                with archive.open(info) as handle:
                    header = _read_header(handle, name, where)
            except (zipfile.BadZipFile, OSError, RuntimeError) as error:
                raise InvalidInputsError(f"{where}: array {quote(name)} cannot be read: {error}") from None
            _check_header(name, header, signatures)
            declared = math.prod(header.shape) * header.dtype.itemsize
            if declared > info.file_size:
                raise InvalidInputsError(
                    f"{where}: array {quote(name)} declares {declared:,} bytes but the archive holds {info.file_size:,}"
                )
            arrays[name] = _read_array(lambda info=info: archive.open(info), name, where)  # type: ignore[misc]
    return LoadedInputs(arrays, notes, tuple(members), where)


def given_samples(sig: SignatureSpec, loaded: LoadedInputs, notes: list[str]) -> list[Sample]:
    """The samples of signature ``sig`` in what :func:`load_inputs` read."""
    arrays = loaded.arrays
    per_input: dict[str, tuple[str, np.ndarray]] = {}
    missing = []
    for spec in sig.inputs:
        found = next((name for name in sig.array_names(spec) if name in arrays), None)
        if found is None:
            missing.append(spec.name)
        else:
            per_input[spec.name] = (found, arrays[found])
    if missing:
        raise InvalidInputsError(
            f"{loaded.where} {'have' if loaded.where == 'the inputs' else 'has'} no array for "
            f"{', '.join(quote(m) for m in missing)} of {sig.where}"
            f" (it holds {', '.join(quote(a) for a in loaded.held[:8]) or 'no array'}"
            f"{' and more' if len(loaded.held) > 8 else ''}); "
            f"name the arrays after the inputs ({', '.join(quote(s.name) for s in sig.inputs)})"
        )
    counts = {}
    stacked: dict[str, np.ndarray] = {}
    for spec in sig.inputs:
        name, array = per_input[spec.name]
        if array.ndim == len(spec.shape):
            array = array[np.newaxis]
        dtype = np.dtype(spec.dtype)
        if array.dtype != dtype:
            if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                raise InvalidInputsError(
                    f"array {quote(name)} is {array.dtype}, but input {quote(spec.name)} of {sig.where} takes {dtype}"
                )
            if dtype.kind == "f" and array.dtype.kind in "biu":
                notes.append(
                    f"array {quote(name)} holds integers ({array.dtype}) for float input {quote(spec.name)} of "
                    f"{sig.where}: converted to {dtype}; check that the scale is the one the model expects"
                )
            array = array.astype(dtype)
        if dtype.kind == "f":
            nonfinite = int(np.count_nonzero(~np.isfinite(array)))
            if nonfinite:
                notes.append(f"array {quote(name)} holds {nonfinite:,} non-finite values (NaN or infinite)")
        stacked[spec.name] = array
        counts[name] = array.shape[0]
    if len(set(counts.values())) > 1:
        raise InvalidInputsError(
            f"the arrays for {sig.where} hold different numbers of samples "
            f"({', '.join(f'{quote(k)}: {v}' for k, v in sorted(counts.items()))})"
        )
    n = next(iter(counts.values()), 1)
    if not stacked:
        return [Sample(sig.key, "inputs", "inputs", {})]
    return [
        Sample(
            sig.key,
            f"inputs[{i}]" if n > 1 else "inputs",
            "inputs",
            {name: np.ascontiguousarray(a[i]) for name, a in stacked.items()},
        )
        for i in range(n)
    ]


def check_shapes(shapes: Mapping[str, Sequence[int]], signatures: Sequence[SignatureSpec]) -> None:
    """Refuse a ``--shape`` that names no input or does not fit it."""
    for name, dims in shapes.items():
        targets = _targets(name, signatures)
        if not targets:
            known = sorted({n for sig in signatures for spec in sig.inputs for n in sig.array_names(spec)})
            raise InvalidInputsError(
                f"--shape {quote(name)}: the model has no such input (its inputs: {', '.join(quote(k) for k in known)})"
            )
        for sig, spec in targets:
            if len(dims) != len(spec.shape) or any(w >= 0 and w != d for w, d in zip(spec.shape, dims)):
                raise InvalidInputsError(
                    f"--shape {quote(name)}={','.join(map(str, dims))} does not fit input {quote(spec.name)} of "
                    f"{sig.where}, of shape {list(spec.shape)} (-1: dynamic)"
                )


def probe_shape(spec: InputSpec, size: int) -> tuple[int, ...]:
    """``spec``'s shape with its dynamic dimensions set for a probe: a dynamic first dimension of an
    input of two or more dimensions is the batch (1); the others are ``size``."""
    return tuple(
        d if d >= 0 else (1 if axis == 0 and len(spec.shape) >= 2 else size) for axis, d in enumerate(spec.shape)
    )


def _probe(kind: str, shape: Sequence[int], dtype: np.dtype[Any], rng: np.random.Generator) -> np.ndarray:
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
        values = rng.standard_normal(shape)
        return (values * LARGE_SCALE if kind == "large" else values).astype(dtype)
    return rng.integers(0, 16, shape).astype(dtype)


def probe_samples(sig: SignatureSpec, shapes: Mapping[str, tuple[int, ...]], seed: int) -> list[Sample]:
    """The three probes of ``sig``, each input of the shape ``shapes`` gives it."""
    rng = np.random.default_rng(seed)
    samples = []
    for kind in PROBES:
        feeds = {spec.name: _probe(kind, shapes[spec.name], np.dtype(spec.dtype), rng) for spec in sig.inputs}
        samples.append(Sample(sig.key, kind, "probe", feeds))
    return samples
