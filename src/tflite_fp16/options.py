"""Every choice the rewrite offers, in one validated, immutable value.

:func:`~tflite_fp16.rewrite`, :func:`~tflite_fp16.plan_file`,
:func:`~tflite_fp16.rewrite_bytes` and the command line all take the same
:class:`Options`, either whole (``options=Options(...)``) or as keyword
arguments named after its fields (``rewrite(a, b, lossy="convert")``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from .keepfile import read_keep_file

__all__ = ["DEFAULT_MAX_CAST_ERROR", "DEFAULT_TOLERANCE", "LAYOUTS", "LOSSY_POLICIES", "Options"]

LOSSY_POLICIES = ("keep", "convert", "error")
LAYOUTS = ("auto", "normal", "offset")
DEFAULT_MAX_CAST_ERROR = 1e-3
# Relative L2 error per output that --verify accepts. TensorFlow's own float16
# conversions of the corpus models stay at or below 2.7e-3 on every probe
# (conv_transpose on N(0,1) x 1000; most are below 6e-4); 1e-2 leaves room.
DEFAULT_TOLERANCE = 1e-2

Inputs = Union[None, str, "os.PathLike[str]", Mapping[str, Any]]


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
    ``inputs`` (an ``.npz`` path or a mapping of arrays) or on the default
    probes, and fails when an output's relative L2 error exceeds ``tolerance``;
    ``probes=True`` runs the probes as well as ``inputs`` (``None``: the probes
    only when there are no inputs). ``auto`` searches the constants to keep float32 so that every output stays
    within ``tolerance`` on ``inputs`` and the probes (see
    :mod:`tflite_fp16.tools.auto`); ``save_keep`` writes the names it chose to a
    file, which ``keep_from`` reads back (one name or pattern a line) to
    convert the same way without LiteRT. ``progress`` shows the search's (and a
    batch's) progress on stderr when it is a terminal.

    >>> Options(lossy="convert").lossy
    'convert'
    >>> Options(keep=["*bias*"]).keep
    ('*bias*',)
    """

    keep: tuple[str, ...] = ()
    skip_ops: tuple[str, ...] = ()
    min_elements: int = 0
    custom_op_inputs: bool = False
    lossy: str = "keep"
    max_cast_error: float = DEFAULT_MAX_CAST_ERROR
    layout: str = "auto"
    fp16_compute: bool = False
    verify: bool = False
    inputs: Inputs = field(default=None, compare=False)
    tolerance: float = DEFAULT_TOLERANCE
    probes: bool | None = None
    auto: bool = False
    keep_from: str | None = None
    save_keep: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        keep = _strings("keep", self.keep)
        if self.keep_from is not None:
            set_(self, "keep_from", os.fspath(self.keep_from))
            keep = keep + read_keep_file(self.keep_from)
        set_(self, "keep", tuple(dict.fromkeys(keep)))
        set_(self, "skip_ops", tuple(_normalise_op(name) for name in _strings("skip_ops", self.skip_ops)))
        if isinstance(self.min_elements, bool) or not isinstance(self.min_elements, int) or self.min_elements < 0:
            raise ValueError(f"min_elements must be an integer >= 0, not {self.min_elements!r}")
        if self.lossy not in LOSSY_POLICIES:
            raise ValueError(f"lossy must be one of {', '.join(LOSSY_POLICIES)}, not {self.lossy!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
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
        raise ValueError(
            f"skip_ops: unknown operator {name!r}; use a builtin name of the TFLite schema "
            f"(e.g. RESIZE_BILINEAR, FULLY_CONNECTED) or CUSTOM:name for a custom operator"
        )
    return upper
