"""The tolerance search: convert as much as possible while every output stays within a tolerance.

Some models are hurt by float16 although every constant casts well on its own: a
filter bank whose rounding the signal path amplifies, two nearly equal products
subtracted. No rule about a single constant finds those; running the model does.
The search (``--auto``, ``rewrite(..., auto=True)``) returns the constants to keep
float32, by tensor identity; the caller converts with exactly those kept.

What judges a candidate: with ``inputs``, the tolerance (under ``metric``) on the
user's samples, while the probes only guard against breakage; without them, the
tolerance on the probes, which are then all there is.

1. Convert as the options say (lossy constants already kept) and verify: if it
   passes, that is the result (1 run).
2. Run the original as a candidate (1 run): if even all-float32 fails (a
   non-deterministic model, a tolerance below float32's own noise), nothing can
   pass: :class:`~tflite_fp16.errors.VerificationError` (exit 3).
3. Follow the error to where it enters, at most :data:`ROUNDS` (3) times: both
   models run again on the candidate's worst sample with every intermediate
   tensor kept (2 runs); the float16 constants read where the error first
   exceeds the limit (or, for an operator that reads none, upstream of it,
   where the outputs first differ) stay float32, and that candidate runs (1
   run). Done when it passes; no more rounds when the error did not halve (it
   is spread over many constants rather than entering at one place).
4. Rank the other constants by harm per byte float16 saves: the error the
   operators that read them add, in quadrature, times the share of it that
   survives on the way to the outputs (from the last comparison; ties: the
   smaller first).
5. While it fails and the budget allows, find the constant that carries most
   of the error left, by halving the ranked constants (error energy taken as
   additive; at most ceil(log2 N) runs), and keep it float32.
6. If it still fails, bisection finds the shortest prefix of the ranking that,
   kept float32 too, passes (at most ceil(log2 N) runs).
7. Convert again what need not stay: the most of the smallest kept constants
   at once (bisection), then the largest one at a time (up to
   :data:`PRUNE_RUNS`), within the budget.

At most :data:`BUDGET` (40) LiteRT runs, whatever the number of candidates (each
run on every sample; the comparisons of every tensor on one sample; every
distinct candidate runs once, so a model of N < 6 candidates makes at most
2^N + 6): :func:`run_bound`. Every candidate is built in memory from one plan and one cast of each
constant; the original's outputs are computed once. Every run is a point of the
trade-off curve (bytes kept float32, worst error), reported as ``curve``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ..conversion.edit import apply_plan
from ..conversion.plan import BufferConversion, KeptTensor, Plan, TensorRef, make_plan
from ..errors import RewriteError, VerificationError
from ..format.model import TFLiteModel
from ..format.reader import open_model, parse_model
from ..format.writer import serialize
from ..keepfile import KeepEntry, content_digest, render_keep_file
from ..options import Metric, Options
from ..pipeline import float16_casts
from ..text import json_number
from ..verification import Verifier, VerifyReport
from ..work import gc_paused, thread_pool

__all__ = [
    "PRUNE_RUNS",
    "CurvePoint",
    "SearchChoice",
    "SearchResult",
    "keep_file_text",
    "relabel",
    "run_bound",
    "search",
]

BUDGET = 40  # LiteRT runs the search may make (for many candidates; fewer for few)
ROUNDS = 3  # the most times the search follows the error to where it enters
PRUNE_RUNS = 8  # the most constants the last step tries to convert again
_LINE_SECONDS = 5.0  # off a terminal, a progress line every this many seconds (progress="lines")


@dataclass(frozen=True)
class SearchChoice:
    """A buffer the search keeps float32: its tensors, the bytes float16 would have saved, and
    the error float16 adds where it is read (``harm``, from the layer comparison; 0 when not seen)."""

    buffer: int
    tensors: tuple[TensorRef, ...]
    bytes_saved: int
    harm: float
    where: str  # the operator the harm was seen at, e.g. "3 CONV_2D"; "" when not seen
    digest: str  # the first 16 hex digits of the SHA-256 of its float32 data


class CurvePoint(NamedTuple):
    """One candidate the search ran: the bytes it kept float32 (of what float16 would save),
    its worst error under the tolerance's rule (inf with new non-finite values), and its verdict."""

    bytes_kept: int
    error: float
    passed: bool


@dataclass(frozen=True)
class SearchResult:
    """What the search found: the tensors to keep float32, and the accepted model's digest and
    verification, which the final conversion must reproduce exactly."""

    tolerance: float
    metric: Metric
    judged_on: Literal["inputs", "probes"]  # what the tolerance was applied to
    chosen: tuple[SearchChoice, ...]  # kept float32 by the search
    candidates: int  # converted buffers the search could choose from
    candidate_bytes: int  # bytes float16 saves on all of them
    runs: int  # LiteRT model runs
    default_error: float  # worst error of the conversion without the search
    curve: tuple[CurvePoint, ...]  # every candidate run, by bytes kept
    sha256: str  # of the accepted model's bytes
    verification: VerifyReport  # of the accepted model
    notes: tuple[str, ...] = ()
    default_layers: VerifyReport | None = None  # the default conversion's layer comparison (the ranking's evidence)

    @property
    def keep_tensors(self) -> frozenset[tuple[int, int]]:
        """The (subgraph, tensor) identities kept float32."""
        return frozenset((t.subgraph, t.tensor) for c in self.chosen for t in c.tensors)

    @property
    def bytes_kept(self) -> int:
        """Bytes float16 would have saved on the buffers kept float32."""
        return sum(c.bytes_saved for c in self.chosen)

    @property
    def share_kept(self) -> float:
        return self.bytes_kept / self.candidate_bytes if self.candidate_bytes else 0.0

    def final_options(self, options: Options) -> Options:
        """``options`` for the final conversion: exactly the chosen tensors kept, and no search (its
        verification is the search's: the conversion must give the accepted model's bytes)."""
        return dataclasses.replace(
            options,
            auto=False,
            save_keep=None,
            verify=False,
            plot=None,
            keep_tensors=frozenset(options.keep_tensors) | self.keep_tensors,
        )

    def accept(self, candidate: str | bytes) -> VerifyReport:
        """The search's verification, for ``candidate`` (a path or bytes) when it is the model the
        search accepted, byte for byte; a :class:`~tflite_fp16.errors.RewriteError` otherwise."""
        if _sha256(candidate) != self.sha256:
            raise RewriteError(
                "internal error: the model written differs from the one the tolerance search accepted "
                "(please report it); no output written"
            )
        return self.verification

    def better_tolerance(self) -> CurvePoint | None:
        """Of the runs that kept fewer bytes float32 than this result, the one with the smallest
        (finite) error: a tolerance of that error would convert more."""
        lighter = [p for p in self.curve if p.bytes_kept < self.bytes_kept and math.isfinite(p.error)]
        return min(lighter, key=lambda p: (p.error, p.bytes_kept), default=None)

    def to_dict(self) -> dict[str, Any]:
        """The search as JSON-ready data (the report's ``auto`` section)."""
        return {
            "tolerance": self.tolerance,
            "metric": self.metric,
            "judged_on": self.judged_on,
            "candidates": self.candidates,
            "runs": self.runs,
            "run_bound": run_bound(self.candidates),
            "default_error": json_number(self.default_error),
            "bytes_kept_float32": self.bytes_kept,
            "candidate_bytes": self.candidate_bytes,
            "share_kept": round(self.share_kept, 6),
            "kept": [
                {
                    "tensors": [{"subgraph": t.subgraph, "tensor": t.tensor, "name": t.name} for t in c.tensors],
                    "bytes": c.bytes_saved,
                    "harm": json_number(c.harm),
                    "where": c.where or None,
                    "sha256": c.digest,
                }
                for c in self.chosen
            ],
            "keep_tensors": sorted([s, t] for s, t in self.keep_tensors),
            "curve": [
                {"bytes_kept_float32": p.bytes_kept, "worst_error": json_number(p.error), "passed": p.passed}
                for p in self.curve
            ],
            "sha256": self.sha256,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line (two when most of the model stays float32)."""
        runs = f"{self.runs} LiteRT run{'s' if self.runs != 1 else ''} over {self.candidates} candidates"
        rule = f"tolerance {self.tolerance:g} ({self.metric}) on the {self.judged_on}"
        if not self.chosen:
            return f"auto: the conversion meets {rule} as it is (worst error {self.default_error:.3g}; {runs})"
        tensors = sum(len(c.tensors) for c in self.chosen)
        line = (
            f"auto: kept {tensors} tensor{'s' if tensors != 1 else ''} float32 ({self.bytes_kept:,} bytes, "
            f"{100 * self.share_kept:.1f}% of what float16 saves) to meet {rule}; worst error "
            f"{self.default_error:.3g} without; {runs}"
        )
        if self.share_kept > 0.5:
            line += (
                f"\nauto: most of the model stays float32: the default conversion's worst error is "
                f"{self.default_error:.3g}"
            )
            better = self.better_tolerance()
            if better is not None:
                line += f"; --tolerance {_round_up(better.error)} would keep only {better.bytes_kept:,} bytes float32"
        return line


def _round_up(value: float) -> str:
    """``value`` rounded up to two significant digits, as a tolerance to type."""
    if value <= 0:
        return "0"
    exponent = math.floor(math.log10(value)) - 1
    return f"{math.ceil(value / 10**exponent) * 10**exponent:.2g}"


def _sha256(model: str | bytes) -> str:
    digest = hashlib.sha256()
    if isinstance(model, bytes):
        digest.update(model)
    else:
        with open(model, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run_bound(candidates: int) -> int:
    """The most LiteRT runs the search makes for ``candidates`` converted buffers."""
    if candidates == 0:
        return 1
    # Each distinct candidate runs once, so a few constants allow fewer runs than the budget.
    return BUDGET if candidates >= 6 else min(BUDGET, 2**candidates + 2 * ROUNDS)


def keep_file_text(result: SearchResult) -> str:
    """The keep file of ``result`` (see :mod:`tflite_fp16.keepfile`): one exact entry per tensor
    kept, with its shape and data digest."""
    entries = [
        KeepEntry("exact", t.name, tuple(t.shape), choice.digest) for choice in result.chosen for t in choice.tensors
    ]
    comment = (
        f"--auto --tolerance {result.tolerance:g} --metric {result.metric} on the {result.judged_on}: "
        f"{len(entries)} tensors kept float32"
    )
    return render_keep_file(entries, comment)


def relabel(plan: Plan, result: SearchResult) -> Plan:
    """The plan with the tensors the search kept given reason ``tolerance`` and what it measured."""
    chosen: dict[tuple[int, int], SearchChoice] = {(t.subgraph, t.tensor): c for c in result.chosen for t in c.tensors}
    kept: list[KeptTensor] = []
    for entry in plan.kept:
        choice = chosen.get((entry.subgraph, entry.tensor))
        if choice is not None and entry.reason == "keep_tensor":
            detail = f"kept float32 to meet tolerance {result.tolerance:g} ({result.metric}) on the {result.judged_on}"
            if choice.harm > 0:
                detail += f"; where it is read ({choice.where}), float16 adds a relative L2 error of {choice.harm:.3g}"
            entry = entry._replace(reason="tolerance", detail=detail)
        kept.append(entry)
    return dataclasses.replace(plan, kept=tuple(kept))


class _Progress:
    """Run i of at most N and the current error: a bar on a terminal (tqdm); with ``"lines"``, a
    line every few seconds when stderr is not a terminal (CI logs)."""

    def __init__(self, total: int, mode: bool | Literal["lines"]) -> None:
        self.total = total
        self.bar: Any = None
        self.lines = False
        self.start = self.last = time.monotonic()
        self.done = 0
        if not mode:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="tolerance search", unit="run", file=sys.stderr, leave=False)
        else:
            self.lines = mode == "lines"

    def step(self, point: CurvePoint) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"worst error {point.error:.3g}", refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if self.lines and now - self.last >= _LINE_SECONDS:
            self.last = now
            print(
                f"tflite-fp16: auto: run {self.done} of at most {self.total} ({now - self.start:.0f} s): worst error "
                f"{point.error:.3g} with {point.bytes_kept:,} bytes kept float32",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _worst_error(report: VerifyReport) -> float:
    """The worst error under the tolerance's rule (the breakage guard aside); inf with new non-finite values."""
    if any(c.new_nonfinite for c in report.comparisons):
        return math.inf
    judged = [c.error for c in report.comparisons if c.rule != "breakage"] or [c.error for c in report.comparisons]
    return max(judged, default=0.0)


def _harm(layered: VerifyReport, buffer_of: Mapping[tuple[int, int], int]) -> dict[int, tuple[float, str]]:
    """Each converted buffer's harm: how much error the operators that read it add, in quadrature
    (the error they are given and carry on aside; inf for new non-finite values), times how
    much of it survives on the way to the outputs (the product of the attenuations, error out
    over error in when below 1, of the operators downstream). Charged to the operator's own
    float16 constants, or, when it reads none, to those upstream where the outputs first differ."""
    layers = [layer for layer in layered.layers if layer.operator not in ("input", "constant")]
    surviving: dict[int, float] = {}  # tensor -> the share of an error there that reaches the outputs
    for layer in reversed(layers):
        factor = min(1.0, layer.rel_l2_error / layer.input_error) if layer.input_error > 0 else 1.0
        reach = factor * surviving.get(layer.tensor, 1.0)
        for t in layer.sources:
            surviving[t] = max(surviving.get(t, 0.0), reach)
    harm: dict[int, tuple[float, str]] = {}
    for layer in layers:
        if layer.new_nonfinite:
            added = math.inf
        else:
            added = math.sqrt(max(0.0, layer.rel_l2_error**2 - layer.input_error**2))
        added *= surviving.get(layer.tensor, 1.0)
        if added <= 0:
            continue
        for origin in layered.origins(layer):
            for t in origin.constant_tensors:
                b = buffer_of.get((origin.subgraph, t))
                if b is not None and added > harm.get(b, (0.0, ""))[0]:
                    harm[b] = (added, origin.operator)
    return harm


def search(source: str | os.PathLike[str] | bytes, options: Options) -> SearchResult:
    """Find the converted buffers to keep float32 so that every output stays within
    ``options.tolerance``: on ``options.inputs`` when given (the probes then guard against
    breakage only), else on the probes. ``source``: a path or bytes.

    Raises :class:`~tflite_fp16.errors.VerificationError` when even the all-float32 model does
    not meet the tolerance, or only it does (nothing would convert).
    """
    plain = dataclasses.replace(options, auto=False, verify=False, save_keep=None, plot=None)
    original: str | bytes = source if isinstance(source, bytes) else os.fspath(source)
    on_inputs = options.inputs is not None
    with (
        Verifier(
            original,
            options.inputs,
            probes=True,
            tolerance=options.tolerance,
            metric=options.metric,
            shapes=options.shapes,
            check=options.check,
            probe_rule="breakage" if on_inputs else "tolerance",
            timeout=options.verify_timeout,
        ) as verifier,
        gc_paused(),
        thread_pool() as executor,
    ):
        if isinstance(original, bytes):
            model = parse_model(original)
            return _Search(model, original, plain, verifier, on_inputs).run(make_plan(model, plain, executor))
        with open_model(original) as model:
            return _Search(model, original, plain, verifier, on_inputs).run(make_plan(model, plain, executor))


class _Search:
    def __init__(
        self, model: TFLiteModel, original: str | bytes, options: Options, verifier: Verifier, on_inputs: bool
    ) -> None:
        self.model = model
        self.original = original
        self.options = options
        self.verifier = verifier
        self.judged_on: Literal["inputs", "probes"] = "inputs" if on_inputs else "probes"
        self.runs = 0
        self.curve: dict[frozenset[int], CurvePoint] = {}
        self.accepted: dict[frozenset[int], tuple[str, VerifyReport]] = {}
        self.notes: list[str] = []
        self.default_layers: VerifyReport | None = None
        self.entries: dict[int, tuple[float, str]] = {}  # constants kept where the error entered

    def run(self, plan: Plan) -> SearchResult:
        model, options = self.model, self.options
        conversions = plan.conversions
        by_buffer = {c.buffer: c for c in conversions}
        self.progress = _Progress(run_bound(len(conversions)), options.progress)
        self.plan = plan
        self.conversions = conversions
        self.casts = float16_casts(model, plan)
        for cast in self.casts.values():
            cast.pinned = True  # cast once, written into every candidate
        try:
            everything = frozenset(by_buffer)
            default = self.evaluate(frozenset())
            default_error = _worst_error(default)
            if default.passed:
                return self.result(frozenset(), default_error)
            itself = self.evaluate(everything)
            if not itself.passed:
                raise VerificationError(
                    f"tolerance {options.tolerance:g} cannot be met even with every constant float32: the original "
                    f"model differs from itself by {_worst_error(itself):.3g}; it is not deterministic, or the "
                    f"tolerance is below float32's own noise. No output written",
                    itself,
                    search=self.result(everything, default_error),
                )
            steps = math.ceil(math.log2(len(conversions)))
            kept, harm = self.follow_the_error(default)
            ranking = sorted(
                (c for c in conversions if c.buffer not in kept),
                key=lambda c: (-harm.get(c.buffer, (0.0, ""))[0] / (2 * max(1, c.elements)), c.elements, c.buffer),
            )
            # Find the constants that carry most of the error left, one by one, while the budget
            # leaves room for the bisection and the last pass.
            while not self.evaluate(kept).passed and self.runs + steps + steps + PRUNE_RUNS <= BUDGET:
                heaviest = self.heaviest([c for c in ranking if c.buffer not in kept], kept, steps)
                if heaviest is None:
                    break
                kept = kept | {heaviest}
            if not self.evaluate(kept).passed:
                # The rest by harm per byte: the shortest prefix that passes.
                kept = kept | self.shortest_prefix([c for c in ranking if c.buffer not in kept], kept)
            kept = self.prune(kept, by_buffer)
            if kept == everything:
                lighter = min(
                    (p for p in self.curve.values() if p.bytes_kept < self.bytes_of(everything)),
                    key=lambda p: p.error,
                    default=None,
                )
                best = f"; the best partial conversion tried: {lighter.error:.3g}" if lighter is not None else ""
                raise VerificationError(
                    f"tolerance {options.tolerance:g} ({options.metric}) on the {self.judged_on} is met only with every "
                    f"constant float32 (the default conversion's worst error: {default_error:.3g}{best}), so nothing "
                    f"would convert; no output written. A larger --tolerance converts more",
                    itself,
                    search=self.result(everything, default_error, harm),
                )
            return self.result(kept, default_error, harm)
        finally:
            self.progress.close()
            for cast in self.casts.values():
                cast.pinned = False
                cast.release()

    def heaviest(self, ranked: list[BufferConversion], kept: frozenset[int], steps: int) -> int | None:
        """The buffer among ``ranked`` whose float16 rounding carries most of the error left, by
        halving (error energy, the square of the worst error, taken as additive): keep the first
        half float32 too, and follow the half that removes more. At most ``steps`` runs."""
        base = _worst_error(self.evaluate(kept)) ** 2
        if not math.isfinite(base) or not ranked:
            return None
        group, removed = ranked, base  # keeping every constant removes all of the error
        while len(group) > 1:
            first, second = group[: len(group) // 2], group[len(group) // 2 :]
            left = _worst_error(self.evaluate(kept | {c.buffer for c in first})) ** 2
            removed_first = base - left
            if not math.isfinite(removed_first):
                return None
            group, removed = (
                (first, removed_first)
                if removed_first >= removed - removed_first
                else (second, removed - removed_first)
            )
        return group[0].buffer if removed > 0 else None

    def prune(self, kept: frozenset[int], by_buffer: Mapping[int, BufferConversion]) -> frozenset[int]:
        """Convert again what need not stay float32: the most of the smallest kept constants that can
        go at once, by bisection (small ones come in cheaply with the ranking); then, one at a time,
        the largest, up to :data:`PRUNE_RUNS` runs."""
        smallest = sorted(kept, key=lambda b: (by_buffer[b].elements, b))
        low, high = 0, len(smallest)  # dropping smallest[:low] passes (none: known); all of them: not tried
        while high - low > 1 and self.runs < BUDGET:
            middle = (low + high) // 2
            if self.evaluate(kept - set(smallest[:middle])).passed:
                low = middle
            else:
                high = middle
        kept = kept - set(smallest[:low])
        for candidate in sorted(kept, key=lambda b: (-by_buffer[b].elements, b))[:PRUNE_RUNS]:
            if self.runs >= BUDGET:
                break
            if self.evaluate(kept - {candidate}).passed:
                kept = kept - {candidate}
        return kept

    def shortest_prefix(self, order: list[BufferConversion], also: frozenset[int]) -> frozenset[int]:
        """The shortest prefix of ``order`` that passes kept float32 (with ``also`` kept too), by
        bisection: keeping none of ``order`` fails, keeping all of it passes (both already run)."""
        low, high = 0, len(order)
        while high - low > 1:
            middle = (low + high) // 2
            if self.evaluate(also | {c.buffer for c in order[:middle]}).passed:
                high = middle
            else:
                low = middle
        return frozenset(c.buffer for c in order[:high])

    def bytes_of(self, kept: frozenset[int]) -> int:
        return sum(2 * c.elements for c in self.conversions if c.buffer in kept)

    def candidate(self, kept: frozenset[int]) -> str | bytes:
        """The model with the buffers ``kept`` float32 and the rest converted, as bytes (all kept:
        the original, as it was given)."""
        subset = tuple(c for c in self.conversions if c.buffer not in kept)
        if not subset:
            return self.original
        converted = {t for c in subset for t in c.tensors}
        partial = dataclasses.replace(
            self.plan, conversions=subset, sparse_tensors=tuple(r for r in self.plan.sparse_tensors if r in converted)
        )
        content, _ = serialize(apply_plan(self.model, partial, self.casts), layout=self.options.layout)
        return content

    def evaluate(self, kept: frozenset[int]) -> VerifyReport:
        """Run the candidate that keeps ``kept`` float32 (once per set) and put it on the curve."""
        known = self.accepted.get(kept)
        if known is not None:
            return known[1]
        content = self.candidate(kept)
        report = self.verifier.check(content)
        self.runs += 1
        point = CurvePoint(self.bytes_of(kept), _worst_error(report), report.passed)
        self.curve[kept] = point
        self.accepted[kept] = (_sha256(content), report)
        self.progress.step(point)
        if not kept:
            self.default_content = content
        return report

    def follow_the_error(self, default: VerifyReport) -> tuple[frozenset[int], dict[int, tuple[float, str]]]:
        """Keep float32 the constants where the error enters, round after round (at most
        :data:`ROUNDS`): compare every tensor of the candidate with the original's on its worst
        sample (2 runs), keep the constants read where the error first exceeds the limit (or
        upstream of it, where outputs first differ), and run the candidate that keeps them
        (1 run), until it passes. Also returns each other constant's harm, from the last
        comparison, to rank the rest by."""
        kept: frozenset[int] = frozenset()
        report = default
        harm: dict[int, tuple[float, str]] = {}
        buffer_of: Mapping[tuple[int, int], int] = {
            (t.subgraph, t.tensor): c.buffer for c in self.conversions for t in c.tensors
        }
        for _ in range(ROUNDS):
            layered = self.verifier.with_layers(self.candidate(kept), report)
            self.runs += 2
            if self.default_layers is None and layered.layers:
                self.default_layers = layered
            if not layered.layers:
                self.notes.extend(note for note in layered.notes if note not in report.notes)
                self.notes.append("no layer comparison: the constants were ranked by size alone")
                break
            harm = _harm(layered, buffer_of)
            entry = layered.entry
            culprits = (
                frozenset(
                    buffer_of[(origin.subgraph, t)]
                    for origin in (layered.origins(entry) if entry is not None else ())
                    for t in origin.constant_tensors
                    if (origin.subgraph, t) in buffer_of
                )
                - kept
            )
            if not culprits:
                break
            self.entries.update({b: harm.get(b, (0.0, entry.operator if entry else "")) for b in culprits})
            kept = kept | culprits
            before = _worst_error(report)
            report = self.evaluate(kept)
            if report.passed or not _worst_error(report) < before / 2:
                break  # passed, or the error is spread rather than entering at one place
        return kept, {**harm, **self.entries}

    def result(
        self, kept: frozenset[int], default_error: float, harm: Mapping[int, tuple[float, str]] | None = None
    ) -> SearchResult:
        harm = harm or {}
        chosen = tuple(
            SearchChoice(
                c.buffer,
                c.tensors,
                2 * c.elements,
                harm.get(c.buffer, (0.0, ""))[0],
                harm.get(c.buffer, (0.0, ""))[1],
                content_digest(self.model.buffer_data(c.buffer)),
            )
            for c in self.conversions
            if c.buffer in kept
        )
        digest, verification = self.accepted[kept]
        return SearchResult(
            self.options.tolerance,
            self.options.metric,
            self.judged_on,
            chosen,
            len(self.conversions),
            self.bytes_of(frozenset(c.buffer for c in self.conversions)),
            self.runs,
            default_error,
            tuple(sorted(self.curve.values())),
            digest,
            verification,
            tuple(self.notes),
            self.default_layers,
        )
