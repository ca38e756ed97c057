"""The public entry points: :func:`rewrite` and :func:`plan_file`."""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

from .cast import Float16Cast
from .edit import apply_plan
from .errors import InvalidModelError
from .plan import Options, Plan, make_plan
from .reader import open_model
from .writer import LAYOUTS, write_model

__all__ = ["Report", "rewrite", "plan_file"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Report:
    """What :func:`rewrite` did."""

    input_path: str
    output_path: Optional[str]  # None for a dry run
    input_bytes: int
    output_bytes: Optional[int]  # None for a dry run
    plan: Plan
    clipped: int = 0  # values beyond +-65504, saturated to +-65504
    flushed: int = 0  # non-zero values too small for float16, now zero
    layout: Optional[str] = None  # "normal" or "offset" (buffer data after the flatbuffer); None for a dry run

    @property
    def tensors_converted(self) -> int:
        return len(self.plan.tensors)

    def summary(self) -> str:
        """One line: tensors converted and size before -> after."""
        if self.output_bytes is None:
            return (
                f"{self.tensors_converted} tensors would be converted to float16 "
                f"(dry run, nothing written); input {self.input_bytes:,} bytes"
            )
        line = f"{self.tensors_converted} tensors converted to float16"
        line += f"; {self.input_bytes:,} -> {self.output_bytes:,} bytes"
        if self.input_bytes:
            line += f" ({100.0 * self.output_bytes / self.input_bytes:.1f}%)"
        if self.layout == "offset":
            line += "; buffer data after the flatbuffer (offset layout)"
        if self.clipped:
            line += f"; {self.clipped} values beyond +-65504 saturated"
        if self.flushed:
            line += f"; {self.flushed} tiny values became 0"
        return line



def plan_file(path_in: PathLike, *, keep: Sequence[str] = (), min_elements: int = 0, custom_op_inputs: bool = False) -> Plan:
    """What :func:`rewrite` would convert in ``path_in``, and why not the rest.

    >>> print(plan_file("model.tflite").describe())     # doctest: +SKIP
    """
    return rewrite(path_in, None, dry_run=True, keep=keep, min_elements=min_elements, custom_op_inputs=custom_op_inputs).plan


def rewrite(
    path_in: PathLike,
    path_out: Optional[PathLike],
    *,
    dry_run: bool = False,
    layout: str = "auto",
    keep: Sequence[str] = (),
    min_elements: int = 0,
    custom_op_inputs: bool = False,
) -> Report:
    """Write the float16 version of the float32 TFLite model ``path_in`` to ``path_out``.

    Every FLOAT32 constant that an operator reads is stored as float16 and
    read through a new DEQUANTIZE op, as TensorFlow's float16 post-training
    quantization does; everything else is carried over. ``path_out`` may be
    ``path_in``; it is replaced only when the new file is complete. With
    ``dry_run`` nothing is written and the report only holds the plan.

    ``layout`` places the buffer data: ``"auto"`` (default) inside the
    flatbuffer when the output fits in 2 GiB, else after it
    (``Buffer.offset/size``, the layout TensorFlow uses for large models);
    ``"normal"`` or ``"offset"`` force one or the other.

    ``keep`` (tensor-name patterns), ``min_elements`` and ``custom_op_inputs``
    adjust what is converted; see :class:`~tflite_fp16.plan.Options`. The
    defaults follow TensorFlow's rule.

    >>> report = rewrite("model.tflite", "model_fp16.tflite")   # doctest: +SKIP
    >>> print(report.summary())                                  # doctest: +SKIP
    10 tensors converted to float16; 20,520 -> 14,888 bytes (72.6%)

    Raises :class:`InvalidModelError` for input that is not a readable TFLite
    model and :class:`UnsupportedModelError` for a model it cannot rewrite
    without losing something.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if isinstance(keep, str):
        raise TypeError("keep takes a sequence of patterns, not one string: keep=[pattern]")
    if min_elements < 0:
        raise ValueError(f"min_elements must be >= 0, not {min_elements}")
    options = Options(tuple(keep), min_elements, custom_op_inputs)
    try:
        input_bytes = os.path.getsize(path_in)
    except FileNotFoundError:
        raise InvalidModelError(f"{os.fspath(path_in)}: no such file") from None
    with _no_cyclic_gc():
        return _rewrite(path_in, path_out, input_bytes, dry_run, layout, options)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a model is a tree of up to millions of
    small acyclic objects, and repeated collections over them cost a third of the
    time on models with many tensors. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _rewrite(path_in: PathLike, path_out: Optional[PathLike], input_bytes: int, dry_run: bool, layout: str, options: Options) -> Report:
    with open_model(path_in) as model:
        plan = make_plan(model, options)
        if dry_run or path_out is None:
            return Report(os.fspath(path_in), None, input_bytes, None, plan)
        # Cast lazily: the writer casts each buffer block by block as it writes it.
        float16 = {c.buffer: Float16Cast(model.buffer_data(c.buffer)) for c in plan.conversions}
        rewritten = apply_plan(model, plan, float16)
        written = write_model(rewritten, path_out, layout=layout)
        del model, rewritten, float16
    return Report(
        os.fspath(path_in),
        os.fspath(path_out),
        input_bytes,
        written.size,
        plan,
        clipped=written.counts.clipped,
        flushed=written.counts.flushed,
        layout=written.layout,
    )
