"""The public entry points: :func:`rewrite`, :func:`rewrite_bytes` and :func:`plan_file`.

Each takes the same options: an :class:`~tflite_fp16.options.Options` and/or
keyword arguments named after its fields.
"""

from __future__ import annotations

import gc
import math
import os
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple, Union

from .cast import CastStats, Float16Cast, measure
from .edit import apply_plan
from .errors import InputChangedError, InputNotFoundError, VerificationError
from .model import TFLiteModel
from .options import Options
from .plan import KeptTensor, Plan, make_plan
from .output import check_output
from .reader import open_model, parse_model
from .text import quote
from .writer import check_table_limit, copy_file, serialize, write_model

__all__ = ["Report", "ConvertedTensor", "rewrite", "rewrite_bytes", "plan_file"]

PathLike = Union[str, "os.PathLike[str]"]
BytesLike = Union[bytes, bytearray, memoryview]


class ConvertedTensor(NamedTuple):
    """A tensor that became FLOAT16, and what the cast did to its values."""

    subgraph: int
    tensor: int
    name: str
    shape: Tuple[int, ...]
    elements: int
    buffer: int  # the input's buffer index
    saturated: int  # values beyond +-65504, now +-65504
    infinity: bool  # an infinity was among the saturated values
    flushed: int  # non-zero values that became zero
    max_abs_error: float
    rel_l2_error: float
    lossy: str  # why the cast is lossy (converted under lossy="convert"); "" otherwise


@dataclass(frozen=True)
class Report:
    """What :func:`rewrite` did (or, for a dry run, would do), tensor by tensor."""

    input: str
    output: Optional[str]  # None for a dry run
    size_before: int
    size_after: Optional[int]  # None for a dry run
    layout: Optional[str]  # "normal" or "offset" (buffer data after the flatbuffer); None for a dry run
    plan: Plan
    options: Options
    cast_stats: Mapping[int, CastStats] = field(default_factory=dict, repr=False)  # by input buffer index
    dequantize_ops_added: int = 0
    seconds: float = 0.0
    verification: Any = None  # a VerifyReport when options.verify
    search: Any = None  # an auto.SearchResult when options.auto

    @property
    def dry_run(self) -> bool:
        return self.output is None

    @property
    def unchanged(self) -> bool:
        """Nothing was converted: the output holds the input's bytes."""
        return not self.plan.conversions

    @property
    def tensors_converted(self) -> int:
        return len(self.plan.tensors)

    @cached_property
    def converted(self) -> Tuple[ConvertedTensor, ...]:
        """Every tensor that became FLOAT16, in (subgraph, tensor) order."""
        entries = []
        for conversion in self.plan.conversions:
            stats = self.cast_stats.get(conversion.buffer)
            for ref in conversion.tensors:
                entries.append(
                    ConvertedTensor(
                        ref.subgraph, ref.tensor, ref.name, ref.shape, conversion.elements, conversion.buffer,
                        stats.saturated if stats else 0, bool(stats and stats.infinities), stats.flushed if stats else 0,
                        stats.max_abs_error if stats else math.nan, stats.rel_l2_error if stats else math.nan,
                        conversion.lossy,
                    )
                )
        entries.sort(key=lambda e: (e.subgraph, e.tensor))
        return tuple(entries)

    @property
    def kept(self) -> Tuple[KeptTensor, ...]:
        """Every FLOAT32 constant that stays FLOAT32, with its reason."""
        return self.plan.kept

    @property
    def saturated(self) -> int:
        return sum(s.saturated for s in self.cast_stats.values())

    @property
    def flushed(self) -> int:
        return sum(s.flushed for s in self.cast_stats.values())

    @property
    def min_runtime_version(self) -> Tuple[Optional[str], Optional[str]]:
        """(before, after) of the min_runtime_version metadata (None when the model has none)."""
        before = self.plan.runtime_version
        raised = self.plan.min_runtime_version
        return before, (raised[1] if raised and not self.dry_run and self.plan.conversions else before)

    @property
    def warnings(self) -> Tuple[str, ...]:
        """Options that matched nothing, and every lossy tensor converted anyway."""
        lossy = tuple(
            f"lossy constant converted: subgraph {t.subgraph} tensor {t.tensor} {quote(t.name)}: {c.lossy}"
            for c in self.plan.lossy_conversions
            for t in c.tensors
        )
        return self.plan.warnings + lossy

    def summary(self) -> str:
        """One line: what was converted, sizes, and totals of saturated and flushed values."""
        if not self.plan.conversions:
            line = self.plan.nothing_to_convert()
            if not self.dry_run:
                line += "; input copied unchanged" if self.output != self.input else "; file left unchanged"
            return line
        kept = len(self.plan.kept)
        lossy = self.plan.kept_by_reason().get("lossy", 0)
        verb = "would be converted" if self.dry_run else "converted"
        count = self.tensors_converted
        line = f"{count} tensor{'s' if count != 1 else ''} {verb} to float16"
        if kept:
            line += f", {kept} kept float32" + (f" ({lossy} lossy)" if lossy else "")
        if self.dry_run:
            line += f" (dry run, nothing written); input {self.size_before:,} bytes"
        else:
            line += f"; {self.size_before:,} -> {self.size_after:,} bytes"
            if self.size_before:
                line += f" ({100.0 * (self.size_after or 0) / self.size_before:.1f}%)"
            if self.layout == "offset":
                line += "; buffer data after the flatbuffer (offset layout)"
        if self.saturated:
            line += f"; {self.saturated} values beyond +-65504 saturated"
        if self.flushed:
            line += f"; {self.flushed} tiny values became 0"
        return line

    def to_dict(self) -> Dict[str, Any]:
        """The report as JSON-ready data (documented in the README)."""
        from .report import report_to_dict

        return report_to_dict(self)


def plan_file(path_in: PathLike, options: Optional[Options] = None, **overrides: Any) -> Plan:
    """What :func:`rewrite` would convert in ``path_in``, and why not the rest.

    The plan holds each conversion's value statistics; for the exact cast
    errors of every tensor, make a dry run: ``rewrite(path_in, None)``.

    >>> print(plan_file("model.tflite", min_elements=16).describe())     # doctest: +SKIP
    """
    opts = Options.resolve(options, **overrides)
    with _quiet_gc(), open_model(_existing(path_in)) as model, _pool() as executor:
        return make_plan(model, opts, executor)


def rewrite(path_in: PathLike, path_out: Optional[PathLike], options: Optional[Options] = None, **overrides: Any) -> Report:
    """Write the float16 version of the float32 TFLite model ``path_in`` to ``path_out``.

    Every FLOAT32 constant that an operator reads is stored as float16 and
    read through a new DEQUANTIZE op, as TensorFlow's float16 post-training
    quantization does, except constants float16 cannot hold faithfully
    (``lossy="keep"``, the default) and those the options exclude; everything
    else is carried over. ``path_out`` may be ``path_in``; it is replaced only
    when the new file is complete. With ``path_out=None`` nothing is written
    (a dry run) and the report says what would be done, with the exact cast
    errors. When nothing is converted, the output gets the input's bytes.

    Options (see :class:`~tflite_fp16.options.Options`) come as ``options=`` or
    as keywords: ``keep``, ``skip_ops``, ``min_elements``,
    ``custom_op_inputs``, ``lossy``, ``max_cast_error``, ``layout``,
    ``verify``, ``inputs``, ``tolerance``, ``auto``, ``keep_from``,
    ``save_keep``, ``progress``. With ``auto``, the constants to keep float32
    are searched by running the model (see :mod:`tflite_fp16.auto`).

    >>> report = rewrite("model.tflite", "model_fp16.tflite")   # doctest: +SKIP
    >>> print(report.summary())                                  # doctest: +SKIP
    10 tensors converted to float16; 20,520 -> 14,888 bytes (72.6%)

    Raises :class:`InvalidModelError` for input that is not a readable TFLite
    model, :class:`UnsupportedModelError` for a model it cannot rewrite
    without losing something, :class:`LossyModelError` for lossy constants
    under ``lossy="error"``, and :class:`VerificationError` (no output
    written) when ``verify`` finds the outputs beyond ``tolerance``.
    """
    opts = Options.resolve(options, **overrides)
    if opts.auto:
        return _with_search(path_in, lambda final: rewrite(path_in, path_out, final), opts, check=lambda: (
            _existing(path_in), check_output(path_out) if path_out is not None else None), verify=path_out is not None)
    start = time.perf_counter()
    path_in = _existing(path_in)
    target = check_output(path_out) if path_out is not None else None
    before = _identity(path_in)
    size_before = before[0]
    verifier = _verifier(os.fspath(path_in), opts) if path_out is not None else None
    with _quiet_gc(), open_model(path_in) as model, _pool() as executor:
        plan = make_plan(model, opts, executor)
        if path_out is None:
            stats, added = _dry_run(model, plan, executor)
            return Report(os.fspath(path_in), None, size_before, None, None, plan, opts, stats, added, time.perf_counter() - start)
        outcome = _Outcome(verifier, path_in, before)
        assert target is not None
        if not plan.conversions:
            if _same_file(path_in, target.final):
                outcome.check(os.fspath(path_in))
                size_after = size_before
            else:
                size_after = copy_file(path_in, target, outcome.check)
            layout = None
            added = 0
            casts: Dict[int, Float16Cast] = {}
        else:
            rewritten, casts, added = _rewritten(model, plan)
            written = write_model(rewritten, target, layout=opts.layout, before_commit=outcome.check)
            size_after, layout = written.size, written.layout
            del rewritten
        stats = {b: c.stats for b, c in casts.items() if c.stats is not None}
        del model, casts
    return Report(os.fspath(path_in), os.fspath(path_out), size_before, size_after, layout, plan, opts, stats,
                  added, time.perf_counter() - start, outcome.report)


def rewrite_bytes(data: BytesLike, options: Optional[Options] = None, **overrides: Any) -> Tuple[bytes, Report]:
    """:func:`rewrite` for a model held in memory: the float16 model's bytes and the report.

    >>> with open("model.tflite", "rb") as f:                     # doctest: +SKIP
    ...     converted, report = rewrite_bytes(f.read(), lossy="convert")
    """
    opts = Options.resolve(options, **overrides)
    if opts.auto:
        result: Dict[str, Tuple[bytes, Report]] = {}

        def convert(final: Options) -> Report:
            result["out"] = rewrite_bytes(data, final)
            return result["out"][1]

        report = _with_search(bytes(memoryview(data).cast("B")), convert, opts, check=lambda: None, verify=True)
        return result["out"][0], report
    start = time.perf_counter()
    view = memoryview(data).cast("B")
    verifier = _verifier(bytes(view), opts)
    outcome = _Outcome(verifier)
    with _quiet_gc(), _pool() as executor:
        model = parse_model(view)
        plan = make_plan(model, opts, executor)
        if not plan.conversions:
            output = bytes(view)
            layout = None
            added = 0
            casts: Dict[int, Float16Cast] = {}
        else:
            rewritten, casts, added = _rewritten(model, plan)
            output, layout = serialize(rewritten, layout=opts.layout)
        outcome.check_bytes(output)
        stats = {b: c.stats for b, c in casts.items() if c.stats is not None}
    report = Report("<bytes>", "<bytes>", len(view), len(output), layout, plan, opts, stats,
                    added, time.perf_counter() - start, outcome.report)
    return output, report


def _rewritten(model: TFLiteModel, plan: Plan) -> Tuple[TFLiteModel, Dict[int, Float16Cast], int]:
    """The rewritten model (its float16 data cast as it is written), the casts by buffer, and the
    number of DEQUANTIZE ops added."""
    casts = _casts(model, plan)
    rewritten = apply_plan(model, plan, casts)
    return rewritten, casts, _dequantize_count(model, rewritten)


def _with_search(source: Any, convert: Callable[[Options], Report], opts: Options, check: Callable[[], Any], verify: bool) -> Report:
    """``options.auto``: search the constants to keep float32 (see :mod:`tflite_fp16.auto`), then
    convert with their names as keep patterns, verified; the report names them with reason
    ``tolerance``. ``check`` validates the paths before the search."""
    import dataclasses

    from .auto import relabel, search, write_keep_file

    start = time.perf_counter()
    check()
    result = search(source, opts)
    final = dataclasses.replace(opts, auto=False, save_keep=None, keep=opts.keep + result.patterns, verify=verify, probes=True)
    report = convert(final)
    if opts.save_keep is not None:
        write_keep_file(opts.save_keep, result)
    return dataclasses.replace(report, plan=relabel(report.plan, result), options=opts, search=result,
                               seconds=time.perf_counter() - start)


class _Outcome:
    """Checks the finished output before it is committed: the input must not have changed
    while it was read, and the verification (if any) must pass."""

    def __init__(self, verifier: Any, path_in: Optional[PathLike] = None, identity: Optional[Tuple[int, ...]] = None) -> None:
        self.verifier = verifier
        self.path_in = path_in
        self.identity = identity
        self.report: Any = None

    def check(self, path: str) -> None:
        if self.path_in is not None and _identity(self.path_in, missing_ok=True) != self.identity:
            raise InputChangedError(
                f"{quote(os.fspath(self.path_in))} changed while it was being read (another program wrote, "
                f"replaced or truncated it); no output written"
            )
        if self.verifier is not None:
            self._judge(self.verifier.check(path))

    def check_bytes(self, data: bytes) -> None:
        if self.verifier is not None:
            self._judge(self.verifier.check(data))

    def _judge(self, report: Any) -> None:
        self.report = report
        if not report.passed:
            raise VerificationError(f"{report.summary()}; no output written", report)


def _verifier(original: Any, opts: Options) -> Any:
    """A verifier holding the original's outputs, made before converting so that a missing
    LiteRT or unusable inputs fail fast."""
    if not opts.verify:
        return None
    from .verification import Verifier

    return Verifier(original, opts.inputs, probes=opts.probes, tolerance=opts.tolerance)


def _casts(model: TFLiteModel, plan: Plan) -> Dict[int, Float16Cast]:
    """One lazy float16 cast per converted buffer; buffers that share their data share the cast
    (it is computed once, and written once)."""
    by_data: Dict[int, Float16Cast] = {}
    casts = {}
    for c in plan.conversions:
        data = model.buffer_data(c.buffer)
        cast = by_data.get(id(data))
        if cast is None:
            cast = by_data[id(data)] = Float16Cast(data, c.values)
        casts[c.buffer] = cast
    return casts


def _dry_run(model: TFLiteModel, plan: Plan, executor: Executor) -> Tuple[Dict[int, CastStats], int]:
    """The exact cast statistics of every conversion (no float16 data kept) and the DEQUANTIZE ops the edit adds."""
    casts = _casts(model, plan)
    added = _dequantize_count(model, apply_plan(model, plan, casts))
    measure(list({id(c): c for c in casts.values()}.values()), executor)
    return {b: c.stats for b, c in casts.items() if c.stats is not None}, added


def _dequantize_count(before: TFLiteModel, after: TFLiteModel) -> int:
    """Operators the edit added (it adds only DEQUANTIZE ops). Each comes with a new tensor:
    when the input's tables plus those already pass LiteRT's limit, the output is refused
    now, before it is laid out (the writer makes the exact check)."""
    added = sum(len(s.tables("operators")) for s in after.subgraphs) - sum(len(s.tables("operators")) for s in before.subgraphs)
    check_table_limit(before.tables + 2 * added, at_least=True)
    return added


def _existing(path: PathLike) -> PathLike:
    if not os.path.exists(path):
        raise InputNotFoundError(f"{quote(os.fspath(path))}: no such file")
    return path


def _identity(path: PathLike, missing_ok: bool = False) -> Tuple[int, ...]:
    """(size, modification time, inode, device): what changes when a file is written, replaced or truncated."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return ()
        raise InputNotFoundError(f"{quote(os.fspath(path))}: no such file") from None
    return info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev


def _same_file(a: PathLike, b: PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextmanager
def _pool() -> Iterator[Executor]:
    """Threads for large buffers (NumPy releases the GIL); started only when work is submitted."""
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as executor:
        yield executor


@contextmanager
def _quiet_gc() -> Iterator[None]:
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
