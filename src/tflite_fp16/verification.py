"""Run the original and the converted model in LiteRT and compare their outputs.

This is the only module that imports LiteRT (``ai_edge_litert``, the
``[verify]`` extra), and only when a verification runs: ``import
tflite_fp16`` never loads it.

Inputs: by default three probes per signature, because real front-ends fail
on silence and on large signals that unit noise never shows: ``normal``
(seeded N(0,1)), ``zeros`` and ``large`` (N(0,1) x 1000); integer inputs get
values in [0, 16) (zeros for the ``zeros`` probe). Or arrays from an ``.npz``
file (or a mapping): named after the signature's input names (or, for a
model without signatures, the input tensor names), optionally prefixed by the
signature key (``"encode/x"``); an array with one axis more than the input
holds several samples.

>>> report = verify("model.tflite", "model_fp16.tflite")   # doctest: +SKIP
>>> report.passed, report.worst_rel_l2_error                 # doctest: +SKIP
(True, 0.00031)
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .errors import InvalidInputsError, MissingDependencyError, UnsupportedModelError, VerificationError
from .options import DEFAULT_TOLERANCE
from .text import quote

__all__ = ["INSTALL_HINT", "PROBES", "OutputComparison", "Verifier", "VerifyReport", "load_inputs", "verify"]

PROBES = ("normal", "zeros", "large")
LARGE_SCALE = 1000.0
INSTALL_HINT = "pip install 'tflite-fp16[verify]'"
ModelSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
Inputs = Union[None, str, "os.PathLike[str]", Mapping[str, Any]]


@dataclass(frozen=True)
class OutputComparison:
    """One output of one signature on one sample: how far the converted model's value is from the original's."""

    signature: str  # the signature key ("" for a model without signatures)
    output: str
    sample: str  # "normal", "zeros", "large", or "inputs[i]"
    elements: int
    max_abs_error: float
    rel_l2_error: float  # ||converted - original|| / ||original|| over positions finite in both
    cosine: float
    new_nonfinite: int  # values non-finite in the converted output where the original's are finite

    def passes(self, tolerance: float) -> bool:
        return self.rel_l2_error <= tolerance and self.new_nonfinite == 0

    @property
    def where(self) -> str:
        prefix = f"{self.signature}/" if self.signature else ""
        return f"{prefix}{self.output} on {self.sample}"


@dataclass(frozen=True)
class VerifyReport:
    """Every output of every signature on every sample, compared."""

    comparisons: tuple[OutputComparison, ...]
    tolerance: float
    samples: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.passes(self.tolerance) for c in self.comparisons)

    @property
    def failures(self) -> tuple[OutputComparison, ...]:
        return tuple(c for c in self.comparisons if not c.passes(self.tolerance))

    @property
    def worst_rel_l2_error(self) -> float:
        return max((c.rel_l2_error for c in self.comparisons), default=0.0)

    @property
    def worst(self) -> OutputComparison | None:
        return max(self.comparisons, key=lambda c: (c.new_nonfinite > 0, c.rel_l2_error), default=None)

    def summary(self) -> str:
        """One line: passed or failed, and the worst output."""
        worst = self.worst
        outputs = len({(c.signature, c.output) for c in self.comparisons})
        head = (
            f"verify: {'passed' if self.passed else 'FAILED'} ({outputs} output{'s' if outputs != 1 else ''} x "
            f"{len(self.samples)} sample{'s' if len(self.samples) != 1 else ''}, tolerance {self.tolerance:g})"
        )
        if worst is None:
            return head + "; the model has no outputs"
        text = f"{head}; worst {quote(worst.where)}: relative L2 error {worst.rel_l2_error:.3g}, max abs error {worst.max_abs_error:.3g}"
        nonfinite = sum(c.new_nonfinite for c in self.comparisons)
        if nonfinite:
            text += f", {nonfinite} new non-finite values"
        return text

    def lines(self) -> list[str]:
        """One line per output and sample."""
        out = []
        for c in self.comparisons:
            mark = "ok  " if c.passes(self.tolerance) else "FAIL"
            line = (
                f"  {mark} {quote(c.where)}: rel L2 {c.rel_l2_error:.3g}, max abs {c.max_abs_error:.3g}, "
                f"cosine {c.cosine:.6f}"
            )
            if c.new_nonfinite:
                line += f", {c.new_nonfinite} new non-finite"
            out.append(line)
        return out


def _litert() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        raise MissingDependencyError(f"verification needs LiteRT, which is not installed: {INSTALL_HINT}") from None
    return interpreter


class _Runner:
    """One signature (or the main subgraph of a model without signatures) of one interpreter."""

    def __init__(self, interpreter: Any, key: str | None) -> None:
        self.interpreter = interpreter
        self.key = key
        if key is not None:
            self.runner = interpreter.get_signature_runner(key)
            details = self.runner.get_input_details()
            self.outputs = sorted(self.runner.get_output_details())
        else:
            self.runner = None
            details = {d["name"]: d for d in interpreter.get_input_details()}
            self.outputs = [d["name"] for d in interpreter.get_output_details()]
        self.inputs: dict[str, tuple[tuple[int, ...], Any]] = {}
        for name, detail in details.items():
            signature = tuple(int(d) for d in detail["shape_signature"])
            shape = signature if len(signature) else tuple(int(d) for d in detail["shape"])
            self.inputs[name] = (shape, np.dtype(detail["dtype"]))
        self._indices = {d["name"]: d["index"] for d in interpreter.get_input_details()} if key is None else {}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.runner is not None:
            result = self.runner(**feeds)
            return {name: np.array(result[name]) for name in self.outputs}
        interpreter = self.interpreter
        for name, value in feeds.items():
            interpreter.resize_tensor_input(self._indices[name], list(value.shape))
        interpreter.allocate_tensors()
        for name, value in feeds.items():
            interpreter.set_tensor(self._indices[name], value)
        interpreter.invoke()
        return {d["name"]: interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()}


@contextmanager
def _native_stderr_captured() -> Iterator[list[str]]:
    """Capture what LiteRT's C++ code writes to file descriptor 2 (its INFO line about the
    XNNPACK delegate, and its error details), so the command's stderr stays one line per
    message. The captured lines are returned, to be put into an error message."""
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2: nothing to capture
        yield lines
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            lines.extend(line for line in text.splitlines() if line.strip() and not line.startswith("INFO: "))


# LiteRT's default: builtin kernels with the XNNPACK delegate; then the builtin kernels alone, for
# models XNNPACK cannot prepare (INT2 weights, for one) although the builtin kernels run them.
RESOLVERS = ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")


def _interpreter(model: ModelSource, resolver: str = "AUTO") -> Any:
    litert = _litert()
    with _native_stderr_captured() as native:
        try:
            kind = getattr(litert.OpResolverType, resolver)
            if isinstance(model, (bytes, bytearray, memoryview)):
                interpreter = litert.Interpreter(model_content=bytes(model), experimental_op_resolver_type=kind)
            else:
                interpreter = litert.Interpreter(model_path=os.fspath(model), experimental_op_resolver_type=kind)
            interpreter.allocate_tensors()
            return interpreter
        except (ValueError, RuntimeError) as error:
            detail = "; ".join(native)
            raise type(error)(f"{error}{' (' + detail + ')' if detail else ''}") from None


def _first_interpreter(model: ModelSource, notes: list[str]) -> tuple[Any, str]:
    """The interpreter of the first resolver that loads ``model``, and that resolver."""
    failure: BaseException | None = None
    for resolver in RESOLVERS:
        try:
            interpreter = _interpreter(model, resolver)
        except (ValueError, RuntimeError) as error:
            failure = failure or error
            continue
        if failure is not None:
            notes.append(
                f"XNNPACK cannot prepare the model ({_one_line(failure)}); both models ran on LiteRT's builtin kernels"
            )
        return interpreter, resolver
    assert failure is not None
    raise failure


def _runners(interpreter: Any) -> list[_Runner]:
    keys = sorted(interpreter.get_signature_list())
    return [_Runner(interpreter, key) for key in keys] if keys else [_Runner(interpreter, None)]


def load_inputs(source: Inputs) -> dict[str, np.ndarray]:
    """Arrays by name from an ``.npz`` path or a mapping (checked to be arrays)."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): np.asarray(v) for k, v in source.items()}
    path = os.fspath(source)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise InvalidInputsError(
                    f"{quote(path)} is a single array, not an .npz archive of named arrays (np.savez)"
                )
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise InvalidInputsError(f"inputs file {quote(path)}: no such file") from None
    except InvalidInputsError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise InvalidInputsError(f"inputs file {quote(path)} is not a readable .npz archive: {error}") from None


def _probe(kind: str, shape: Sequence[int], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
        values = rng.standard_normal(shape)
        return (values * LARGE_SCALE if kind == "large" else values).astype(dtype)
    return rng.integers(0, 16, shape).astype(dtype)


Sample = tuple[str, dict[str, np.ndarray]]


def _samples_for(
    runner: _Runner, arrays: Mapping[str, np.ndarray], probes: bool, seed: int, notes: list[str]
) -> list[Sample]:
    """The (sample name, feeds) this signature runs on."""
    where = f"signature {quote(runner.key)}" if runner.key is not None else "the model"
    samples: list[Sample] = []
    if arrays:
        samples.extend(_given_samples(runner, arrays, where))
    if probes:
        dynamic = {name: shape for name, (shape, _) in runner.inputs.items() if any(d < 0 for d in shape)}
        for name, shape in sorted(dynamic.items()):
            notes.append(
                f"input {quote(name)} of {where} has dynamic dimensions {list(shape)}: the probes set them to 1"
            )
        rng = np.random.default_rng(seed)
        for kind in PROBES:
            feeds = {}
            for name, (shape, dtype) in sorted(runner.inputs.items()):
                feeds[name] = _probe(kind, [1 if d < 0 else d for d in shape], dtype, rng)
            samples.append((kind, feeds))
    return samples


def _given_samples(runner: _Runner, arrays: Mapping[str, np.ndarray], where: str) -> list[Sample]:
    per_input: dict[str, np.ndarray] = {}
    missing = []
    for name in sorted(runner.inputs):
        keyed = f"{runner.key}/{name}" if runner.key is not None else None
        if keyed is not None and keyed in arrays:
            per_input[name] = arrays[keyed]
        elif name in arrays:
            per_input[name] = arrays[name]
        else:
            missing.append(name)
    if missing:
        raise InvalidInputsError(
            f"the inputs have no array for {', '.join(quote(m) for m in missing)} of {where}; "
            f"name the arrays after the inputs ({', '.join(quote(n) for n in sorted(runner.inputs))})"
        )
    counts = {}
    stacked: dict[str, np.ndarray] = {}
    for name, array in per_input.items():
        shape, dtype = runner.inputs[name]
        if array.ndim == len(shape):
            array = array[np.newaxis]
        elif array.ndim != len(shape) + 1:
            raise InvalidInputsError(
                f"array {quote(name)} has shape {list(array.shape)}, but input {quote(name)} of {where} has "
                f"{len(shape)} dimensions {list(shape)} (give {len(shape)} dimensions, or {len(shape) + 1} for several samples)"
            )
        for axis, (want, have) in enumerate(zip(shape, array.shape[1:])):
            if want >= 0 and want != have:
                raise InvalidInputsError(
                    f"array {quote(name)} has size {have} in dimension {axis}, but input {quote(name)} of {where} "
                    f"has shape {list(shape)}"
                )
        if array.dtype != dtype:
            if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                raise InvalidInputsError(
                    f"array {quote(name)} is {array.dtype}, but input {quote(name)} of {where} takes {dtype}"
                )
            array = array.astype(dtype)
        stacked[name] = array
        counts[name] = array.shape[0]
    sizes = set(counts.values())
    if len(sizes) > 1:
        raise InvalidInputsError(
            f"the arrays for {where} hold different numbers of samples ({', '.join(f'{quote(k)}: {v}' for k, v in sorted(counts.items()))})"
        )
    n = sizes.pop() if sizes else 1
    if not stacked:
        return [("inputs", {})]
    return [
        (f"inputs[{i}]" if n > 1 else "inputs", {name: np.ascontiguousarray(a[i]) for name, a in stacked.items()})
        for i in range(n)
    ]


def compare_outputs(reference: np.ndarray, other: np.ndarray) -> tuple[float, float, float, int]:
    """(max abs error, relative L2 error, cosine, new non-finite values) of ``other`` against ``reference``.

    Errors are taken over the positions finite in both; an all-zero reference
    gives a relative error of 0 when ``other`` is zero there too, else inf.
    """
    a = np.asarray(reference, np.float64).reshape(-1)
    b = np.asarray(other, np.float64).reshape(-1)
    if a.shape != b.shape:
        return math.inf, math.inf, 0.0, 0
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    new_nonfinite = int(np.count_nonzero(finite_a & ~finite_b))
    both = finite_a & finite_b
    if not both.all():
        a, b = a[both], b[both]
    difference = b - a
    max_abs = float(np.abs(difference).max()) if difference.size else 0.0
    norm_a, norm_b, norm_d = (float(np.linalg.norm(v)) for v in (a, b, difference))
    if norm_a > 0:
        rel = norm_d / norm_a
    else:
        rel = 0.0 if norm_d == 0 else math.inf
    if norm_a > 0 and norm_b > 0:
        cosine = float(np.dot(a, b) / (norm_a * norm_b))
    else:
        cosine = 1.0 if norm_a == norm_b else 0.0
    return max_abs, rel, cosine, new_nonfinite


class Verifier:
    """The original model's outputs on a set of samples, computed once, against which
    any number of converted models can be checked (:meth:`check`)."""

    def __init__(
        self,
        original: ModelSource,
        inputs: Inputs = None,
        *,
        probes: bool | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        seed: int = 0,
    ) -> None:
        arrays = load_inputs(inputs)
        if probes is None:
            probes = not arrays
        self.tolerance = tolerance
        notes: list[str] = []
        try:
            interpreter, self.resolver = _first_interpreter(original, notes)
            runners = _runners(interpreter)
        except (ValueError, RuntimeError) as error:
            raise UnsupportedModelError(
                f"LiteRT cannot load the original model, so it cannot be verified: {_one_line(error)}"
            ) from None
        self.plan: list[tuple[str | None, list[Sample], list[dict[str, np.ndarray]]]] = []
        used: set[str] = set()
        for runner in runners:
            samples = _samples_for(runner, arrays, probes, seed, notes)
            used.update(n for n in runner.inputs)
            if runner.key is not None:
                used.update(f"{runner.key}/{n}" for n in runner.inputs)
            try:
                outputs = [runner.run(feeds) for _, feeds in samples]
            except (ValueError, RuntimeError) as error:
                raise UnsupportedModelError(
                    f"LiteRT cannot run the original model, so it cannot be verified: {_one_line(error)}"
                ) from None
            self.plan.append((runner.key, samples, outputs))
        for name in sorted(set(arrays) - used):
            notes.append(f"array {quote(name)} of the inputs matches no input and was not used")
        self.notes = tuple(notes)
        self.samples = tuple(dict.fromkeys(name for _, samples, _ in self.plan for name, _ in samples))

    def check(self, converted: ModelSource) -> VerifyReport:
        """Run ``converted`` on the same samples and compare every output with the original's."""
        try:
            interpreter = _interpreter(converted, self.resolver)
            runners = {r.key: r for r in _runners(interpreter)}
        except (ValueError, RuntimeError) as error:
            raise VerificationError(f"LiteRT cannot load the converted model: {_one_line(error)}", None) from None
        comparisons = []
        for key, samples, references in self.plan:
            runner = runners.get(key)
            if runner is None:
                raise VerificationError(f"the converted model has no signature {quote(key or '')}", None)
            for (sample, feeds), reference in zip(samples, references):
                try:
                    outputs = runner.run(feeds)
                except (ValueError, RuntimeError) as error:
                    raise VerificationError(
                        f"LiteRT cannot run the converted model on {sample}: {_one_line(error)}", None
                    ) from None
                for name in sorted(reference):
                    max_abs, rel, cosine, new_nonfinite = compare_outputs(
                        reference[name], outputs.get(name, np.empty(0))
                    )
                    comparisons.append(
                        OutputComparison(
                            key or "", name, sample, int(np.size(reference[name])), max_abs, rel, cosine, new_nonfinite
                        )
                    )
        return VerifyReport(tuple(comparisons), self.tolerance, self.samples, self.notes)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def verify(
    original: ModelSource,
    converted: ModelSource,
    inputs: Inputs = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    probes: bool | None = None,
    seed: int = 0,
) -> VerifyReport:
    """Run ``original`` and ``converted`` (paths or bytes) in LiteRT, every signature, and compare
    their outputs.

    ``inputs``: an ``.npz`` path or a mapping of arrays named after the inputs;
    without it (or with ``probes=True``) the three probes run. The report
    :attr:`~VerifyReport.passed` when every output's relative L2 error is within
    ``tolerance`` and no new non-finite value appears.

    Raises :class:`~tflite_fp16.errors.MissingDependencyError` without LiteRT,
    :class:`~tflite_fp16.errors.InvalidInputsError` for unusable inputs,
    :class:`~tflite_fp16.errors.UnsupportedModelError` when LiteRT cannot run
    the original, and :class:`~tflite_fp16.errors.VerificationError` when it
    cannot run the converted model.

    >>> verify("model.tflite", "model_fp16.tflite").passed    # doctest: +SKIP
    True
    """
    return Verifier(original, inputs, probes=probes, tolerance=tolerance, seed=seed).check(converted)
