"""The tolerance search: convert as much as possible while every output stays within a tolerance.

Some models are hurt by float16 although every constant casts well on its
own: a filter bank whose rounding the signal path amplifies, two nearly equal
products subtracted. No rule about a single constant finds those; running the
model does. The search (``--auto``, ``rewrite(..., auto=True)``):

1. Converts as the options say (lossy constants already kept) and verifies in
   LiteRT on the calibration ``inputs`` plus the three probes. If every output's
   relative L2 error is within ``tolerance`` and no new non-finite value
   appears, it is done (1 run).
2. Checks the original against itself (1 run). If even all-float32 fails (a
   non-deterministic model, a tolerance below float32's own noise), no choice
   of constants can pass: :class:`~tflite_fp16.errors.VerificationError` (exit 3).
3. Measures each converted buffer's harm: the worst relative L2 error with only
   that buffer in float16 (N runs).
4. Orders the buffers by harm per byte saved (ties: the smaller first) and
   finds, by bisection, the shortest prefix of that order to keep float32 for
   every sample to pass (at most ceil(log2 N) runs).
5. Drops from that set every buffer the rest passes without, least harmful
   first (at most one run each of the k kept).

So at most 2N + ceil(log2 N) + 2 runs for N converted buffers, each run one
model built in memory from the same plan and casts, and run on every sample.
The original's outputs are computed once. Only the chosen buffers stay
float32. :func:`search` returns the result; the caller converts with
:meth:`SearchResult.final_options` (the chosen tensor names as keep patterns,
``verify=True``).
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from ..conversion.edit import apply_plan
from ..conversion.plan import BufferConversion, Plan, TensorRef, make_plan
from ..errors import VerificationError
from ..format.model import TFLiteModel
from ..format.reader import open_model, parse_model
from ..format.writer import serialize
from ..keepfile import write_keep_file as write_patterns
from ..options import Options
from ..pipeline import float16_casts
from ..text import json_number, quote
from ..verification import Verifier
from ..work import gc_paused, thread_pool

__all__ = ["SearchChoice", "SearchResult", "keep_pattern", "relabel", "run_bound", "search", "write_keep_file"]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


@dataclass(frozen=True)
class SearchChoice:
    """A buffer the search keeps float32: its tensors, the bytes float16 would have saved, and
    the worst error it causes alone (in float16 with everything else float32)."""

    buffer: int
    tensors: tuple[TensorRef, ...]
    bytes_saved: int
    error_alone: float
    worst: str  # where that error is worst: "signature/output on sample"


@dataclass(frozen=True)
class SearchResult:
    """What the search found."""

    tolerance: float
    chosen: tuple[SearchChoice, ...]  # kept float32 by the search
    candidates: int  # converted buffers the search could choose from
    runs: int  # models run in LiteRT (each on every sample)
    default_error: float  # worst relative L2 error of the conversion without the search
    patterns: tuple[str, ...]  # keep patterns naming exactly the chosen tensors

    @property
    def bytes_kept(self) -> int:
        """Bytes float16 would have saved on the buffers kept float32."""
        return sum(c.bytes_saved for c in self.chosen)

    def final_options(self, options: Options, verify: bool) -> Options:
        """``options`` for the final conversion: the chosen tensors kept, verified (``verify``) on
        the samples the search ran, and no search."""
        return dataclasses.replace(
            options, auto=False, save_keep=None, keep=options.keep + self.patterns, verify=verify, probes=True
        )

    def to_dict(self) -> dict[str, Any]:
        """The search as JSON-ready data (the report's ``auto`` section)."""
        return {
            "tolerance": self.tolerance,
            "candidates": self.candidates,
            "runs": self.runs,
            "default_rel_l2_error": json_number(self.default_error),
            "bytes_kept_float32": self.bytes_kept,
            "kept": [
                {
                    "tensors": [{"subgraph": t.subgraph, "tensor": t.tensor, "name": t.name} for t in c.tensors],
                    "bytes": c.bytes_saved,
                    "rel_l2_error_alone": json_number(c.error_alone),
                    "worst": c.worst,
                }
                for c in self.chosen
            ],
            "patterns": list(self.patterns),
        }

    def summary(self) -> str:
        if not self.chosen:
            return (
                f"auto: the conversion meets tolerance {self.tolerance:g} as it is "
                f"(worst relative L2 error {self.default_error:.3g}; {self.runs} LiteRT run{'s' if self.runs != 1 else ''})"
            )
        tensors = sum(len(c.tensors) for c in self.chosen)
        return (
            f"auto: kept {tensors} tensor{'s' if tensors != 1 else ''} float32 ({self.bytes_kept:,} bytes) to meet tolerance "
            f"{self.tolerance:g} (worst relative L2 error {self.default_error:.3g} without); {self.runs} LiteRT runs "
            f"over {self.candidates} candidates"
        )


def run_bound(candidates: int) -> int:
    """The most LiteRT runs the search makes for ``candidates`` converted buffers."""
    if candidates == 0:
        return 0
    return 2 * candidates + math.ceil(math.log2(candidates)) + 2


def keep_pattern(name: str) -> str:
    """An ``fnmatch`` pattern that matches exactly ``name`` (``*?[`` escaped; a line break,
    which a keep file cannot hold, becomes ``?``)."""
    return glob.escape(name).replace("\n", "?").replace("\r", "?")


def write_keep_file(path: str | os.PathLike[str], result: SearchResult) -> None:
    """Write the names the search kept float32, one a line (what ``keep_from`` reads)."""
    header = f"tflite-fp16 --auto --tolerance {result.tolerance:g}: {len(result.patterns)} tensor names kept float32"
    write_patterns(path, header, result.patterns)


def _worst(report: Any) -> tuple[float, str]:
    """The worst relative L2 error of a verification (inf with new non-finite values), and where."""
    worst = report.worst
    if worst is None:
        return 0.0, ""
    error = math.inf if worst.new_nonfinite else worst.rel_l2_error
    return error, worst.where


class _Progress:
    """Tensor i of N and the current error, on stderr when it is a terminal (tqdm when installed)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        self.enabled = enabled and sys.stderr.isatty()
        if not self.enabled:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="tolerance search", unit="tensor", file=sys.stderr, leave=False)
        except ImportError:
            self.total, self.done = total, 0

    def step(self, name: str, error: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{name[-30:]}: {error:.3g}", refresh=False)
            self.bar.update(1)
        else:
            self.done += 1
            sys.stderr.write(f"\rtolerance search: tensor {self.done} of {self.total}, error alone {error:.3g}   ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


def search(source: Source, options: Options) -> SearchResult:
    """Find the converted buffers to keep float32 so that every output stays within
    ``options.tolerance`` on ``options.inputs`` and the probes. ``source``: a path or bytes.

    Raises :class:`~tflite_fp16.errors.VerificationError` when even the all-float32 model
    does not meet the tolerance (nothing can).
    """
    plain = dataclasses.replace(
        options, auto=False, verify=False, save_keep=None
    )  # what to convert, as without the search
    original = (
        bytes(memoryview(source).cast("B")) if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    )
    with (
        Verifier(
            original,
            options.inputs,
            probes=True,
            tolerance=options.tolerance,
            metric=options.metric,
            shapes=options.shapes,
            probe_rule="tolerance",
            timeout=options.verify_timeout,
        ) as verifier,
        gc_paused(),
        thread_pool() as executor,
    ):
        if isinstance(original, bytes):
            return _search(parse_model(original), original, plain, verifier, executor)
        with open_model(original) as model:
            return _search(model, original, plain, verifier, executor)


def _search(model: TFLiteModel, original: Any, options: Options, verifier: Any, executor: Any) -> SearchResult:
    plan = make_plan(model, options, executor)
    conversions = plan.conversions
    if not conversions:
        return SearchResult(options.tolerance, (), 0, 0, 0.0, ())
    casts = float16_casts(model, plan)
    for cast in casts.values():
        cast.pinned = True
        cast.array()
    runs = 0

    def run(subset: Sequence[BufferConversion]) -> Any:
        nonlocal runs
        runs += 1
        converted = {t for c in subset for t in c.tensors}
        partial = dataclasses.replace(
            plan, conversions=tuple(subset), sparse_tensors=tuple(r for r in plan.sparse_tensors if r in converted)
        )
        content, _ = serialize(apply_plan(model, partial, casts), layout=options.layout)
        return verifier.check(content)

    default = run(conversions)
    default_error, _ = _worst(default)
    if default.passed:
        return SearchResult(options.tolerance, (), len(conversions), runs, default_error, ())
    runs += 1
    itself = verifier.check(original)
    if not itself.passed:
        raise VerificationError(
            f"tolerance {options.tolerance:g} cannot be met even with every constant float32: the original model "
            f"differs from itself by {itself.worst_rel_l2_error:.3g} ({quote(itself.worst.where) if itself.worst else ''}); "
            f"it is not deterministic, or the tolerance is below float32's own noise. No output written",
            itself,
        )

    harm: dict[int, tuple[float, str]] = {}
    progress = _Progress(len(conversions), options.progress)
    try:
        for conversion in conversions:
            harm[conversion.buffer] = _worst(run([conversion]))
            progress.step(conversion.tensors[0].name, harm[conversion.buffer][0])
    finally:
        progress.close()

    def per_byte(c: BufferConversion) -> tuple[float, int]:
        error = harm[c.buffer][0]
        return (-(error / max(1, 2 * c.elements)) if math.isfinite(error) else -math.inf, c.elements)

    order = sorted(conversions, key=per_byte)

    def passes_keeping(kept: Sequence[BufferConversion]) -> bool:
        skip = {c.buffer for c in kept}
        return bool(run([c for c in conversions if c.buffer not in skip]).passed)

    low, high = 0, len(order)  # keeping order[:low] fails (the default); keeping all passes (checked above)
    while high - low > 1:
        middle = (low + high) // 2
        if passes_keeping(order[:middle]):
            high = middle
        else:
            low = middle
    kept = list(order[:high])
    for candidate in sorted(kept, key=lambda c: harm[c.buffer][0]):  # least harmful first
        rest = [c for c in kept if c is not candidate]
        if passes_keeping(rest):
            kept = rest
    chosen = tuple(
        SearchChoice(c.buffer, c.tensors, 2 * c.elements, harm[c.buffer][0], harm[c.buffer][1])
        for c in sorted(kept, key=lambda c: c.buffer)
    )
    patterns = tuple(dict.fromkeys(keep_pattern(t.name) for choice in chosen for t in choice.tensors))
    return SearchResult(options.tolerance, chosen, len(conversions), runs, default_error, patterns)


def relabel(plan: Plan, result: SearchResult) -> Plan:
    """The plan with the tensors the search kept given reason ``tolerance`` and their error alone."""
    chosen: dict[tuple[int, int], SearchChoice] = {(t.subgraph, t.tensor): c for c in result.chosen for t in c.tensors}
    kept = []
    for entry in plan.kept:
        choice = chosen.get((entry.tensor.subgraph, entry.tensor.tensor))
        if choice is not None and entry.reason == "keep_pattern":
            entry = entry._replace(
                reason="tolerance",
                detail=(
                    f"in float16 it alone moves the outputs by a relative L2 error of {choice.error_alone:.3g} "
                    f"({quote(choice.worst)}); kept float32 to meet tolerance {result.tolerance:g}"
                ),
            )
        kept.append(entry)
    return dataclasses.replace(plan, kept=tuple(kept))
