"""One model through the conversion: read -> plan -> cast -> edit -> write, with the checks
before the output is committed.

:func:`convert_file` and :func:`convert_bytes` are the whole float16 conversion of one model
(what :func:`tflite_fp16.rewrite` and :func:`tflite_fp16.rewrite_bytes` run);
:class:`FileJob` and :class:`BytesJob` are the steps every transformation of a file shares
(``--to float32`` uses them too): paths checked before any work, the input memory-mapped
with the garbage collector paused, and the output written through a temporary file that
is renamed over the target only when the input has not changed meanwhile and the
verification, if any, has passed. :func:`build` makes a converted model in memory (the
tolerance search builds its candidates with it).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .conversion.cast import CastStats, Float16Cast, measure
from .conversion.edit import apply_plan
from .conversion.plan import Plan, make_plan
from .errors import InputChangedError, VerificationError
from .format.model import TFLiteModel
from .format.paths import OutputTarget, check_output, existing_input, file_identity, same_file
from .format.reader import open_model, parse_model
from .format.writer import check_table_limit, copy_file, planned_size, serialize, write_model
from .options import Options
from .report import Report
from .text import quote
from .work import gc_paused, thread_pool

if TYPE_CHECKING:
    from .verification import Verifier, VerifyReport

__all__ = [
    "BytesJob",
    "Committed",
    "FileJob",
    "Verify",
    "build",
    "byte_view",
    "convert_bytes",
    "convert_file",
    "float16_casts",
    "judged",
    "plan_of_bytes",
    "plan_of_file",
    "verification_of",
    "verifier_for",
]

PathLike = str | os.PathLike[str]
BytesLike = bytes | bytearray | memoryview
Verify = Callable[[str | bytes], "VerifyReport"]  # a candidate output's path or bytes -> its accepted verification


@dataclass(frozen=True)
class Committed:
    """What a job wrote: the sizes, the layout (None when the input's bytes were copied) and the
    verification that accepted it (None without one)."""

    size_before: int
    size_after: int
    layout: str | None
    verification: VerifyReport | None


class FileJob:
    """A model file on its way to an output file (``path_out`` None: a dry run, nothing written).

    Made before any work: the input must exist and the output be writable. :meth:`model`
    reads the input; :meth:`commit` writes the new model (or, given None, the input's bytes)
    once the input is unchanged and ``verifier`` (if any) accepts the output.
    """

    def __init__(self, path_in: PathLike, path_out: PathLike | None) -> None:
        self.path_in = existing_input(path_in)
        self.path_out = path_out
        self.target: OutputTarget | None = check_output(path_out) if path_out is not None else None
        self.identity = file_identity(self.path_in)
        self.verification: VerifyReport | None = None

    @property
    def size_before(self) -> int:
        return self.identity[0]

    @contextmanager
    def model(self) -> Iterator[TFLiteModel]:
        """The input, memory-mapped, with the cyclic garbage collector paused."""
        with gc_paused(), open_model(self.path_in) as model:
            try:
                yield model
            finally:
                # Without this reference the model goes when the caller lets go of it, before the
                # mapping closes and the collector resumes (which would otherwise scan it all).
                del model

    def commit(self, model: TFLiteModel | None, layout: str, verify: Verify | None = None) -> Committed:
        """Write ``model`` (None: the input's bytes) to the output, checked before it replaces anything:
        the input unchanged, and ``verify(temporary path)`` (if given) passed."""
        assert self.target is not None, "a dry run commits nothing"

        def check(temporary: str) -> None:
            if file_identity(self.path_in, missing_ok=True) != self.identity:
                raise InputChangedError(
                    f"{quote(os.fspath(self.path_in))} changed while it was being read (another program wrote, "
                    f"replaced or truncated it); no output written"
                )
            if verify is not None:
                self.verification = verify(temporary)

        if model is not None:
            written = write_model(model, self.target, layout=layout, before_commit=check)
            return Committed(self.size_before, written.size, written.layout, self.verification)
        if same_file(self.path_in, self.target.final):
            check(os.fspath(self.path_in))
            return Committed(self.size_before, self.size_before, None, self.verification)
        return Committed(self.size_before, copy_file(self.path_in, self.target, check), None, self.verification)


def byte_view(data: BytesLike) -> memoryview:
    """``data`` (bytes, bytearray, or any memoryview: a non-contiguous one is copied) as flat bytes."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a model in memory is bytes, a bytearray or a memoryview, not {type(data).__name__}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class BytesJob:
    """A model held in memory on its way to bytes: :class:`FileJob` without files."""

    def __init__(self, data: BytesLike) -> None:
        self.view = byte_view(data)
        self.verification: VerifyReport | None = None

    @contextmanager
    def model(self) -> Iterator[TFLiteModel]:
        with gc_paused():
            yield parse_model(self.view)

    def commit(self, model: TFLiteModel | None, layout: str, verify: Verify | None = None) -> tuple[bytes, Committed]:
        """The output's bytes (the input's, given None), accepted by ``verifier`` if any."""
        if model is None:
            output, chosen = bytes(self.view), None
        else:
            output, chosen = serialize(model, layout=layout)
        if verify is not None:
            self.verification = verify(output)
        return output, Committed(len(self.view), len(output), chosen, self.verification)


def judged(report: VerifyReport) -> VerifyReport:
    """``report``, when it passed; :class:`VerificationError` (no output written) when not."""
    if not report.passed:
        raise VerificationError(f"{report.summary()}; no output written", report)
    return report


@contextmanager
def verifier_for(
    original: str | bytes, options: Options, probe_rule: Literal["breakage", "tolerance"] = "breakage"
) -> Iterator[Verifier | None]:
    """A verifier holding the original's outputs (None without ``options.verify``), made before
    converting so that a missing LiteRT or unusable inputs fail fast; its LiteRT process ends
    with the block."""
    if not options.verify:
        yield None
        return
    from .verification import Verifier  # LiteRT's side, loaded only to verify

    with Verifier(
        original,
        options.inputs,
        probes=options.probes,
        tolerance=options.tolerance,
        metric=options.metric,
        shapes=options.shapes,
        check=options.check,
        probe_rule=probe_rule,
        timeout=options.verify_timeout,
    ) as verifier:
        yield verifier


def verification_of(verifier: Verifier | None, options: Options) -> Verify | None:
    """What a job calls on its output before committing it: the verifier's check (with the layer
    comparison when ``options.layers`` or ``options.plot`` ask for it), judged."""
    if verifier is None:
        return None

    def verify(candidate: str | bytes) -> VerifyReport:
        report = verifier.check(candidate)
        if options.layers or options.plot is not None:
            report = verifier.with_layers(candidate, report)
        return judged(report)

    return verify


def float16_casts(model: TFLiteModel, plan: Plan) -> dict[int, Float16Cast]:
    """One lazy float16 cast per converted buffer; buffers that share their data share the cast
    (it is computed once, and written once)."""
    by_data: dict[int, Float16Cast] = {}
    casts = {}
    for c in plan.conversions:
        data = model.buffer_data(c.buffer)
        cast = by_data.get(id(data))
        if cast is None:
            cast = by_data[id(data)] = Float16Cast(data, c.values)
        casts[c.buffer] = cast
    return casts


def build(
    model: TFLiteModel, plan: Plan, casts: dict[int, Float16Cast] | None = None
) -> tuple[TFLiteModel, dict[int, Float16Cast], int]:
    """The converted model (its float16 data cast as it is written), the casts by buffer, and the
    number of DEQUANTIZE ops added. ``casts`` (from :func:`float16_casts`) may be reused."""
    casts = casts if casts is not None else float16_casts(model, plan)
    converted = apply_plan(model, plan, casts)
    return converted, casts, _added_operators(model, converted)


def _added_operators(before: TFLiteModel, after: TFLiteModel) -> int:
    """Operators the edit added (it adds only DEQUANTIZE ops). Each comes with a new tensor:
    when the input's tables plus those already pass LiteRT's limit, the output is refused
    now, before it is laid out (the writer makes the exact check)."""
    added = sum(len(s.tables("operators")) for s in after.subgraphs) - sum(
        len(s.tables("operators")) for s in before.subgraphs
    )
    check_table_limit(before.tables + 2 * added, at_least=True)
    return added


def _stats(casts: dict[int, Float16Cast]) -> dict[int, CastStats]:
    return {b: c.stats for b, c in casts.items() if c.stats is not None}


def _dry_run(model: TFLiteModel, plan: Plan, layout: str, executor: Executor) -> tuple[dict[int, CastStats], int, int]:
    """The exact cast statistics of every conversion (no float16 data kept), the DEQUANTIZE ops the
    edit adds, and the size the output would have."""
    converted, casts, added = build(model, plan)
    size, _ = planned_size(converted, layout)
    measure(list({id(c): c for c in casts.values()}.values()), executor)
    return _stats(casts), added, size


def plan_of_file(path_in: PathLike, options: Options) -> Plan:
    """The plan of the model at ``path_in``."""
    with gc_paused(), open_model(existing_input(path_in)) as model, thread_pool() as executor:
        plan = make_plan(model, options, executor)
        del model  # before the collector resumes (see FileJob.model)
    return plan


def plan_of_bytes(data: BytesLike, options: Options) -> Plan:
    """The plan of the model held in ``data``."""
    with BytesJob(data).model() as model, thread_pool() as executor:
        plan = make_plan(model, options, executor)
        del model  # before the collector resumes (see FileJob.model)
    return plan


def convert_file(
    path_in: PathLike, path_out: PathLike | None, options: Options, verify: Verify | None = None
) -> Report:
    """The float16 conversion of the model at ``path_in`` written to ``path_out`` (None: a dry
    run), verified before it is committed when ``options.verify`` (or by ``verify``, given)."""
    start = time.perf_counter()
    job = FileJob(path_in, path_out)
    writing = options if path_out is not None else dataclasses.replace(options, verify=False)
    with verifier_for(os.fspath(job.path_in), writing) as verifier, job.model() as model, thread_pool() as executor:
        plan = make_plan(model, options, executor)
        if path_out is None:
            stats, added, size = _dry_run(model, plan, options.layout, executor)
            del model  # before the collector resumes (see FileJob.model)
            report = Report(
                os.fspath(job.path_in),
                None,
                job.size_before,
                None,
                None,
                plan,
                options,
                stats,
                added,
                time.perf_counter() - start,
            )
            return dataclasses.replace(report, planned_size=size if plan.conversions else job.size_before)
        casts: dict[int, Float16Cast] = {}
        converted, added = None, 0
        if plan.conversions:
            converted, casts, added = build(model, plan)
        committed = job.commit(converted, options.layout, verify or verification_of(verifier, options))
        del converted
        stats = _stats(casts)
        del model, casts
    return _committed_report(os.fspath(job.path_in), os.fspath(path_out), committed, plan, options, stats, added, start)


def _committed_report(
    source: str,
    target: str,
    committed: Committed,
    plan: Plan,
    options: Options,
    stats: dict[int, CastStats],
    added: int,
    start: float,
) -> Report:
    return Report(
        source,
        target,
        committed.size_before,
        committed.size_after,
        committed.layout,
        plan,
        options,
        stats,
        added,
        time.perf_counter() - start,
        committed.verification,
    )


def convert_bytes(data: BytesLike, options: Options, verify: Verify | None = None) -> tuple[bytes, Report]:
    """:func:`convert_file` for a model held in memory: the output's bytes and the report."""
    start = time.perf_counter()
    job = BytesJob(data)
    with verifier_for(bytes(job.view), options) as verifier, job.model() as model, thread_pool() as executor:
        plan = make_plan(model, options, executor)
        casts: dict[int, Float16Cast] = {}
        converted, added = None, 0
        if plan.conversions:
            converted, casts, added = build(model, plan)
        output, committed = job.commit(converted, options.layout, verify or verification_of(verifier, options))
        stats = _stats(casts)
        del model, converted, casts  # before the collector resumes (see FileJob.model)
    return output, _committed_report("<bytes>", "<bytes>", committed, plan, options, stats, added, start)
