"""What a conversion did: the :class:`Report`, and its rendering as text (for people) and
as JSON-ready data.

JSON has no infinity or NaN: such numbers are written as the strings
``"inf"``, ``"-inf"`` and ``"nan"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .conversion.cast import CastStats
from .conversion.metadata import MetadataChange
from .conversion.plan import KeptTensor, Plan
from .options import Options
from .text import json_number as number
from .text import quote
from .version import __version__

if TYPE_CHECKING:
    from .verification import VerifyReport

__all__ = [
    "NOTABLE_LINES",
    "ConvertedTensor",
    "Report",
    "SearchOutcome",
    "dumps",
    "render_text",
    "report_to_dict",
    "verification_to_dict",
]

NOTABLE_LINES = 5  # per-tensor lines shown by default before "and N more"


class SearchOutcome(Protocol):
    """A tolerance search's result as a report holds it (:class:`~tflite_fp16.tools.auto.SearchResult`)."""

    @property
    def tolerance(self) -> float: ...

    @property
    def judged_on(self) -> str: ...

    @property
    def runs(self) -> int: ...

    @property
    def default_error(self) -> float: ...

    @property
    def sha256(self) -> str: ...

    @property
    def keep_tensors(self) -> frozenset[tuple[int, int]]: ...

    @property
    def bytes_kept(self) -> int: ...

    def summary(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class ConvertedTensor(NamedTuple):
    """A tensor that became FLOAT16, and what the cast did to its values."""

    subgraph: int
    tensor: int
    name: str
    shape: tuple[int, ...]
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
    output: str | None  # None for a dry run
    size_before: int
    size_after: int | None  # None for a dry run
    layout: str | None  # "normal" or "offset" (buffer data after the flatbuffer); None for a dry run
    plan: Plan
    options: Options
    cast_stats: Mapping[int, CastStats] = field(default_factory=dict, repr=False)  # by input buffer index
    dequantize_ops_added: int = 0
    seconds: float = 0.0
    verification: VerifyReport | None = None  # when options.verify
    search: SearchOutcome | None = None  # the tolerance search's result, when options.auto
    planned_size: int | None = None  # a dry run: the size the output would have

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
    def converted(self) -> tuple[ConvertedTensor, ...]:
        """Every tensor that became FLOAT16, in (subgraph, tensor) order."""
        entries = []
        for conversion in self.plan.conversions:
            stats = self.cast_stats.get(conversion.buffer)
            for ref in conversion.tensors:
                entries.append(
                    ConvertedTensor(
                        ref.subgraph,
                        ref.tensor,
                        ref.name,
                        ref.shape,
                        conversion.elements,
                        conversion.buffer,
                        stats.saturated if stats else 0,
                        bool(stats and stats.infinities),
                        stats.flushed if stats else 0,
                        stats.max_abs_error if stats else math.nan,
                        stats.rel_l2_error if stats else math.nan,
                        conversion.lossy,
                    )
                )
        entries.sort(key=lambda e: (e.subgraph, e.tensor))
        return tuple(entries)

    @property
    def kept(self) -> tuple[KeptTensor, ...]:
        """Every FLOAT32 constant that stays FLOAT32, with its reason."""
        return self.plan.kept

    @property
    def kept_by_reason(self) -> dict[str, int]:
        """How many constants stay float32, by reason code."""
        return self.plan.kept_by_reason()

    @property
    def metadata(self) -> tuple[MetadataChange, ...]:
        """The metadata entries the conversion changes (a dry run: would change)."""
        return tuple(c for c in self.plan.metadata if c.action != "left")

    def lines(self, verbose: bool = False) -> list[str]:
        """What the command prints on success (``verbose``: as with ``-v``); warnings aside."""
        return render_text(self, 1 if verbose else 0)[0]

    @property
    def saturated(self) -> int:
        """Values beyond +-65504, saturated, over every converted tensor."""
        return sum(s.saturated for s in self.cast_stats.values())

    @property
    def flushed(self) -> int:
        """Non-zero values that became 0, over every converted tensor."""
        return sum(s.flushed for s in self.cast_stats.values())

    @property
    def min_runtime_version(self) -> tuple[str | None, str | None]:
        """(before, after) of the min_runtime_version metadata (None when the model has none)."""
        before = self.plan.runtime_version
        raised = self.plan.min_runtime_version
        return before, (raised[1] if raised and not self.dry_run and self.plan.conversions else before)

    @property
    def warnings(self) -> tuple[str, ...]:
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
            line += f" (dry run, nothing written); {self.size_before:,} -> {self.planned_size or 0:,} bytes"
            if self.size_before and self.planned_size:
                line += f" ({100.0 * self.planned_size / self.size_before:.1f}%)"
        else:
            line += f"; {self.size_before:,} -> {self.size_after:,} bytes"
            if self.size_before:
                line += f" ({100.0 * (self.size_after or 0) / self.size_before:.1f}%)"
            if self.layout == "offset":
                line += "; buffer data after the flatbuffer (offset layout)"
        if self.saturated:
            line += f"; {self.saturated} {'value' if self.saturated == 1 else 'values'} beyond +-65504 saturated"
        if self.flushed:
            line += f"; {self.flushed} tiny {'value' if self.flushed == 1 else 'values'} became 0"
        return line

    def size_advice(self) -> str:
        """When the output is larger than the input (each converted constant costs a DEQUANTIZE op
        and a tensor, which small constants do not pay back): what ``min_elements`` would do
        about it, with an estimated size; empty otherwise."""
        after = self.planned_size if self.dry_run else self.size_after
        if after is None or after <= self.size_before or not self.plan.conversions or not self.dequantize_ops_added:
            return ""
        conversions = self.plan.conversions
        saved = {c.buffer: (-2 if c.new_buffer else 2) * c.elements for c in conversions}
        # What one converted tensor costs (its DEQUANTIZE op, its float32 tensor, their tables), on average.
        cost = (after - self.size_before + sum(saved.values())) / self.dequantize_ops_added
        best: tuple[int, float] | None = None
        for threshold in sorted({c.elements + 1 for c in conversions}):
            kept = [c for c in conversions if c.elements < threshold]
            if len(kept) == len(conversions):
                break
            size = after - sum(cost * len(c.tensors) - saved[c.buffer] for c in kept)
            if best is None or size < best[1]:
                best = (threshold, size)
        head = (
            f"the output is larger than the input ({self.size_before:,} -> {after:,} bytes): each converted constant "
            f"costs a DEQUANTIZE op and a tensor (about {cost:,.0f} bytes)"
        )
        if best is not None and best[1] < self.size_before:
            return f"{head}; --min-elements {best[0]} would give about {best[1]:,.0f} bytes"
        return f"{head}, more than any of its constants saves in float16; the float32 model is the smaller one"

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (documented in the README)."""
        return report_to_dict(self)


def _converted(entry: ConvertedTensor) -> dict[str, Any]:
    return {
        "subgraph": entry.subgraph,
        "tensor": entry.tensor,
        "name": entry.name,
        "shape": list(entry.shape),
        "elements": entry.elements,
        "saturated": entry.saturated,
        "infinity": entry.infinity,
        "flushed": entry.flushed,
        "max_abs_error": number(entry.max_abs_error),
        "rel_l2_error": number(entry.rel_l2_error),
        "lossy": entry.lossy or None,
    }


def _kept(entry: KeptTensor) -> dict[str, Any]:
    return {
        "subgraph": entry.subgraph,
        "tensor": entry.tensor,
        "name": entry.name,
        "shape": list(entry.shape),
        "elements": entry.elements,
        "reason": entry.reason,
        "detail": entry.detail,
    }


def verification_to_dict(verification: VerifyReport | None) -> dict[str, Any] | None:
    """The ``verify`` section of the JSON report (null without a verification)."""
    return verification.to_dict() if verification is not None else None


def report_to_dict(report: Report) -> dict[str, Any]:
    """Every field of the JSON report (see the README's "JSON report" section)."""
    options = report.options
    before, after = report.min_runtime_version
    data: dict[str, Any] = {
        "tool": "tflite-fp16",
        "version": __version__,
        "input": report.input,
        "output": report.output,
        "dry_run": report.dry_run,
        "size_before": report.size_before,
        "unchanged": report.unchanged,
    }
    if report.dry_run:
        data["planned_size"] = report.planned_size
    else:
        data["size_after"] = report.size_after
        data["layout"] = report.layout
    data.update(
        {
            "converted": [_converted(e) for e in report.converted],
            "kept": [_kept(e) for e in report.kept],
            "kept_by_reason": report.kept_by_reason,
            "dequantize_ops_added": report.dequantize_ops_added,
            "min_runtime_version": {"before": before, "after": after},
            "metadata": [c.to_dict() for c in report.metadata],
            "warnings": list(report.warnings),
            "size_advice": report.size_advice() or None,
            "options": {
                "lossy": options.lossy,
                "max_cast_error": options.max_cast_error,
                "keep": list(options.keep),
                "skip_ops": list(options.skip_ops),
                "min_elements": options.min_elements,
                "custom_op_inputs": options.custom_op_inputs,
                "layout": options.layout,
                "fp16_compute": options.fp16_compute,
            },
            "seconds": round(report.seconds, 6),
            "verify": verification_to_dict(report.verification),
            "auto": report.search.to_dict() if report.search is not None else None,
        }
    )
    return data


def metadata_line(change: Any, dry_run: bool) -> str:
    before = f" (was {change.before})" if change.before is not None else ""
    after = f": {change.after}" if change.after is not None else ""
    return f"  metadata {change.name} {'would be ' if dry_run else ''}{change.action}{after}{before}"


def dumps(data: Any) -> str:
    # ensure_ascii: names from the file reach the JSON escaped, so no control byte reaches a terminal
    return json.dumps(data, indent=2, ensure_ascii=True, allow_nan=False)


def _g(value: float) -> str:
    return f"{value:.3g}"


def converted_line(entry: ConvertedTensor, dry_run: bool = False) -> str:
    line = (
        f"  {'would convert' if dry_run else 'converted'} subgraph {entry.subgraph} tensor {entry.tensor} "
        f"{quote(entry.name)} {list(entry.shape)}: "
        f"{entry.elements} values, max abs error {_g(entry.max_abs_error)}, rel L2 {_g(entry.rel_l2_error)}"
    )
    if entry.saturated:
        line += f", {entry.saturated} saturated" + (" (an infinity among them)" if entry.infinity else "")
    if entry.flushed:
        line += f", {entry.flushed} flushed to 0"
    if entry.lossy:
        line += " [LOSSY]"
    return line


def kept_line(entry: KeptTensor) -> str:
    return (
        f"  kept float32 subgraph {entry.subgraph} tensor {entry.tensor} {quote(entry.name)} ({entry.reason}): "
        f"{entry.detail}"
    )


def render_text(report: Report, verbosity: int = 0) -> tuple[list[str], list[str]]:
    """(lines for stdout, warning lines for stderr). ``verbosity``: -1 quiet, 0 default, 1 every tensor."""
    if verbosity < 0:
        return [], []
    out = [report.summary()]
    if verbosity > 0:
        out.extend(converted_line(e, report.dry_run) for e in report.converted)
        out.extend(kept_line(e) for e in report.kept)
        out.extend(metadata_line(c, report.dry_run) for c in report.metadata)
    else:
        for reason in ("lossy", "tolerance"):
            notable = [k for k in report.kept if k.reason == reason]
            out.extend(kept_line(k) for k in notable[:NOTABLE_LINES])
            if len(notable) > NOTABLE_LINES:
                out.append(
                    f"  and {len(notable) - NOTABLE_LINES} more kept float32 as {reason} (-v lists every tensor)"
                )
    advice = report.size_advice()
    if advice:
        out.append(f"  note: {advice}")
    if report.search is not None:
        out.extend(report.search.summary().splitlines())
    if report.verification is not None:
        out.append(report.verification.summary())
        if verbosity > 0:
            out.extend(report.verification.lines())
        out.extend(report.verification.layer_lines())
        out.extend(f"  note: {n}" for n in report.verification.notes)
    err = [f"tflite-fp16: warning: {w}" for w in report.warnings]
    return out, err
