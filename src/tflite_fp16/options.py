"""Every choice the rewrite offers, in one validated, immutable value.

:func:`~tflite_fp16.rewrite`, :func:`~tflite_fp16.plan_file`,
:func:`~tflite_fp16.rewrite_bytes` and the command line all take the same
:class:`Options`, either whole (``options=Options(...)``) or as keyword
arguments named after its fields (``rewrite(a, b, lossy="convert")``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from .keepfile import KeepEntry, read_keep_file

__all__ = [
    "BREAKAGE_BOUND",
    "DEFAULT_MAX_CAST_ERROR",
    "DEFAULT_TOLERANCE",
    "DEFAULT_VERIFY_TIMEOUT",
    "LAYOUTS",
    "LOSSY_POLICIES",
    "METRICS",
    "Layout",
    "Lossy",
    "Metric",
    "Options",
    "OptionsArguments",
]

Lossy = Literal["keep", "convert", "error"]
Layout = Literal["auto", "normal", "offset"]
Metric = Literal["rel_l2", "max_abs", "cosine", "top1"]
LOSSY_POLICIES: tuple[Lossy, ...] = ("keep", "convert", "error")
LAYOUTS: tuple[Layout, ...] = ("auto", "normal", "offset")
METRICS: tuple[Metric, ...] = ("rel_l2", "max_abs", "cosine", "top1")
DEFAULT_MAX_CAST_ERROR = 1e-3
# The error per output that --verify accepts on the user's inputs. TensorFlow's own float16
# conversions of the corpus models stay at or below 2.7e-3 on every probe
# (conv_transpose on N(0,1) x 1000; most are below 6e-4); 1e-2 leaves room.
DEFAULT_TOLERANCE = 1e-2
DEFAULT_VERIFY_TIMEOUT = 600.0  # seconds LiteRT may take to run one model on every sample
#: The probes are out of distribution by design (N(0,1) x 1000 for an image model whose inputs lie in
#: [0, 1]); they judge breakage only: a new non-finite value, or a relative L2 error beyond this bound.
#: Measured on real models: harmless float16 conversions reach 0.083 on the probes (a DB text
#: detector's sigmoid map; TensorFlow's own float16 file has the same error), broken ones start
#: at 0.23 (constants beyond float16's range) or give non-finite values. 0.15 lies between, with
#: room on both sides.
BREAKAGE_BOUND = 0.15

Inputs = None | str | os.PathLike[str] | Mapping[str, Any]


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} takes a sequence of strings, not one string: {name}=[{value!r}]")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} takes strings, not {type(item).__name__} ({item!r})")
    return items


@dataclass(frozen=True)
class Options:
    """What to convert, how to treat constants float16 cannot hold, and how to write the result.

    Selection (each narrows what TensorFlow's rule converts):

    * ``keep``: tensor-name patterns (``fnmatch``, e.g. ``"*/attention/*"``) that
      stay float32. A pattern also matches each ``;``-separated part of a fused
      name such as ``"a/b/MatMul;a/b/BiasAdd"``.
    * ``keep_tensors``: tensors that stay float32, exactly, by ``(subgraph, tensor index)``.
    * ``keep_from``: a keep file (see :mod:`tflite_fp16.keepfile`): exact names
      (with shape and data digest) and patterns.
    * ``skip_ops``: operators whose constant inputs stay float32, by schema name
      (``"RESIZE_BILINEAR"``) or ``"CUSTOM:name"`` for a custom operator.
    * ``min_elements``: constants with fewer values stay float32.
    * ``custom_op_inputs``: also convert constants read by custom operators.

    Lossy constants (values beyond +-65504, or a relative L2 cast error above
    ``max_cast_error``): ``lossy="keep"`` (default) keeps them float32,
    ``"convert"`` converts them as TensorFlow does (saturating, flushing),
    ``"error"`` refuses the model.

    ``layout``: ``"auto"``, ``"normal"`` or ``"offset"`` (buffer data after the
    flatbuffer, for models over 2 GB). ``fp16_compute``: declare the model fit
    for float16 arithmetic (``reduced_precision_support`` = ``fp16accfp16``
    rather than TensorFlow's ``fp16accfp32``): the XNNPACK delegate then runs
    it in float16 on processors with native float16 (faster, less precise).

    Verification (needs the ``[verify]`` extra): ``verify`` runs the original
    and the converted model in LiteRT before the output is written, on
    ``inputs`` (an ``.npz`` or ``.npy`` path or a mapping of arrays), judged by
    ``tolerance`` under ``metric`` (``"rel_l2"``, ``"max_abs"``, ``"cosine"``,
    ``"top1"``) or by ``check(reference, converted)``, and on the default
    probes, judged for breakage only; ``probes=True`` runs the probes as well
    as ``inputs`` (``None``: the probes only when there are no inputs).
    ``shapes`` sets the probes' dynamic dimensions (``{"audio": (1, 16000)}``);
    ``layers`` compares every intermediate tensor to show where the error
    enters; ``plot`` draws it (a PNG; the ``[plot]`` extra); ``verify_timeout``
    bounds each LiteRT run, in seconds.

    ``auto`` searches the constants to keep float32 so that every output stays within
    ``tolerance`` on ``inputs`` (without them, on the probes; see
    :mod:`tflite_fp16.tools.auto`); ``save_keep`` writes the tensors it chose to a keep
    file, which ``keep_from`` reads back to convert the same way without LiteRT.
    ``progress`` shows the search's (and a batch's) progress on stderr when it is a
    terminal (``"lines"``: also a line every few seconds when it is not).

    >>> Options(lossy="convert").lossy
    'convert'
    >>> Options(keep=["*bias*"]).keep
    ('*bias*',)
    """

    keep: Sequence[str] = ()
    keep_tensors: Collection[tuple[int, int]] = frozenset()
    skip_ops: Sequence[str] = ()
    min_elements: int = 0
    custom_op_inputs: bool = False
    lossy: Lossy = "keep"
    max_cast_error: float = DEFAULT_MAX_CAST_ERROR
    layout: Layout = "auto"
    fp16_compute: bool = False
    verify: bool = False
    inputs: Inputs = field(default=None, compare=False)
    tolerance: float = DEFAULT_TOLERANCE
    probes: bool | None = None
    metric: Metric = "rel_l2"
    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict, hash=False)
    layers: bool = False
    plot: str | os.PathLike[str] | None = None
    check: Callable[..., bool] | None = field(default=None, compare=False)
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT
    auto: bool = False
    keep_from: str | os.PathLike[str] | None = None
    save_keep: str | os.PathLike[str] | None = None
    # The exact entries of the keep file (its patterns join ``keep``); read from ``keep_from``.
    keep_names: tuple[KeepEntry, ...] = field(default=(), init=False)
    progress: bool | Literal["lines"] = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        keep = _strings("keep", self.keep)
        names: tuple[KeepEntry, ...] = ()
        if self.keep_from is not None:
            set_(self, "keep_from", os.fspath(self.keep_from))
            entries = read_keep_file(self.keep_from)
            keep = keep + tuple(e.text for e in entries if e.kind == "pattern")
            names = tuple(e for e in entries if e.kind == "exact")
        if self.save_keep is not None:
            set_(self, "save_keep", os.fspath(self.save_keep))
        set_(self, "keep", tuple(dict.fromkeys(keep)))
        set_(self, "keep_names", names)
        set_(self, "keep_tensors", _tensor_ids(self.keep_tensors))
        set_(self, "skip_ops", tuple(_normalise_op(name) for name in _strings("skip_ops", self.skip_ops)))
        if isinstance(self.min_elements, bool) or not isinstance(self.min_elements, int) or self.min_elements < 0:
            raise ValueError(f"min_elements must be an integer >= 0, not {self.min_elements!r}")
        if self.lossy not in LOSSY_POLICIES:
            raise ValueError(f"lossy must be one of {', '.join(LOSSY_POLICIES)}, not {self.lossy!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        set_(self, "shapes", _shapes(self.shapes))  # a copy of its own (a mapping proxy would not pickle)
        if self.plot is not None:
            set_(self, "plot", os.fspath(self.plot))
            if not (self.verify or self.auto):
                raise ValueError(
                    "plot draws what the verification found: add verify=True (--verify) or auto=True (--auto)"
                )
        if self.check is not None and not callable(self.check):
            raise TypeError(f"check must be a function (reference, converted) -> bool, not {type(self.check).__name__}")
        if not (
            isinstance(self.verify_timeout, (int, float))
            and not isinstance(self.verify_timeout, bool)
            and math.isfinite(self.verify_timeout)
            and self.verify_timeout > 0
        ):
            raise ValueError(f"verify_timeout must be a number of seconds > 0, not {self.verify_timeout!r}")
        for name in ("max_cast_error", "tolerance"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
            set_(self, name, float(value))

    @classmethod
    def resolve(cls, options: Options | None = None, **overrides: Any) -> Options:
        """``options`` (or the defaults) with ``overrides`` applied; unknown names are a TypeError.

        >>> Options.resolve(None, min_elements=16).min_elements
        16
        """
        if options is not None and not isinstance(options, Options):
            raise TypeError(f"options must be an Options, not {type(options).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown option {', '.join(unknown)}; the options are: {', '.join(sorted(known))}")
        base = options if options is not None else cls()
        return dataclasses.replace(base, **overrides) if overrides else base


class OptionsArguments(TypedDict, total=False):
    """The keyword arguments :func:`~tflite_fp16.rewrite`, :func:`~tflite_fp16.rewrite_bytes` and
    :func:`~tflite_fp16.plan_file` take: the fields of :class:`Options`, typed, so that a type
    checker catches a misspelled option."""

    keep: Sequence[str]
    keep_tensors: Collection[tuple[int, int]]
    skip_ops: Sequence[str]
    min_elements: int
    custom_op_inputs: bool
    lossy: Lossy
    max_cast_error: float
    layout: Layout
    fp16_compute: bool
    verify: bool
    inputs: Inputs
    tolerance: float
    probes: bool | None
    metric: Metric
    shapes: Mapping[str, Sequence[int]]
    layers: bool
    plot: str | os.PathLike[str] | None
    check: Callable[..., bool] | None
    verify_timeout: float
    auto: bool
    keep_from: str | os.PathLike[str] | None
    save_keep: str | os.PathLike[str] | None
    progress: bool | Literal["lines"]


def _tensor_ids(value: Any) -> frozenset[tuple[int, int]]:
    """``keep_tensors`` checked: pairs of integers >= 0 (subgraph, tensor index)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"keep_tensors takes (subgraph, tensor) pairs, e.g. [(0, 12)], not {value!r}")
    ids = set()
    for item in value:
        pair = tuple(item) if isinstance(item, Iterable) and not isinstance(item, (str, bytes)) else ()
        if len(pair) != 2 or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in pair):
            raise ValueError(f"keep_tensors: {item!r} is not a (subgraph, tensor index) pair of integers >= 0")
        ids.add((pair[0], pair[1]))
    return frozenset(ids)


def _shapes(value: Any) -> dict[str, tuple[int, ...]]:
    """``{"input": (1, 16000)}`` checked: names are strings, dimensions integers of at least 1."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"shapes takes a mapping of input names to dimensions, e.g. {{'audio': (1, 16000)}}, not {value!r}"
        )
    shapes = {}
    for name, dims in value.items():
        if not isinstance(name, str) or isinstance(dims, (str, bytes)):
            raise TypeError(f"shapes: {name!r}: give an input name and a sequence of dimensions")
        dims = tuple(dims)
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
            raise ValueError(f"shapes: {name!r}: dimensions must be integers >= 1, not {list(dims)}")
        shapes[name] = dims
    return shapes


def _normalise_op(name: str) -> str:
    """``"resize_bilinear"`` -> ``"RESIZE_BILINEAR"``; ``"custom:MyOp"`` -> ``"CUSTOM:MyOp"``; unknown names refused."""
    from .format.model import BUILTIN_OPS  # the schema record; imported here to keep the command's start light

    if name.upper().startswith("CUSTOM:"):
        custom = name[len("CUSTOM:") :]
        if not custom:
            raise ValueError(
                "skip_ops: 'CUSTOM:' needs the custom operator's name, e.g. 'CUSTOM:TFLite_Detection_PostProcess'"
            )
        return "CUSTOM:" + custom
    upper = name.upper()
    if upper not in BUILTIN_OPS or upper == "CUSTOM":
        squeezed = {known.replace("_", ""): known for known in BUILTIN_OPS if known != "CUSTOM"}
        guess = squeezed.get(upper.replace("_", "").replace("-", ""))
        if guess is None:
            close = difflib.get_close_matches(upper, list(squeezed.values()), n=1, cutoff=0.75)
            guess = close[0] if close else None
        if guess is not None:
            raise ValueError(f"skip_ops: unknown operator {name!r} (did you mean {guess}?)")
        raise ValueError(
            f"skip_ops: unknown operator {name!r}; use a builtin name of the TFLite schema "
            f"(e.g. RESIZE_BILINEAR, FULLY_CONNECTED) or CUSTOM:name for a custom operator"
        )
    return upper
