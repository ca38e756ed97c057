"""Render a :class:`~tflite_fp16.api.Report` as text (for people) and as JSON-ready data.

JSON has no infinity or NaN: such numbers are written as the strings
``"inf"``, ``"-inf"`` and ``"nan"``.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .text import quote

if TYPE_CHECKING:  # pragma: no cover
    from .api import ConvertedTensor, Report
    from .plan import KeptTensor

__all__ = ["report_to_dict", "verification_to_dict", "search_to_dict", "render_text", "dumps", "NOTABLE_LINES"]

NOTABLE_LINES = 5  # per-tensor lines shown by default before "and N more"


def number(value: float) -> Any:
    """A float as JSON can hold it: non-finite values become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _converted(entry: "ConvertedTensor") -> Dict[str, Any]:
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


def _kept(entry: "KeptTensor") -> Dict[str, Any]:
    return {
        "subgraph": entry.tensor.subgraph,
        "tensor": entry.tensor.tensor,
        "name": entry.tensor.name,
        "shape": list(entry.tensor.shape),
        "elements": entry.elements,
        "reason": entry.reason,
        "detail": entry.detail,
    }


def verification_to_dict(verification: Any) -> Optional[Dict[str, Any]]:
    if verification is None:
        return None
    return {
        "passed": verification.passed,
        "tolerance": verification.tolerance,
        "samples": list(verification.samples),
        "worst_rel_l2_error": number(verification.worst_rel_l2_error),
        "notes": list(verification.notes),
        "outputs": [
            {
                "signature": c.signature,
                "output": c.output,
                "sample": c.sample,
                "elements": c.elements,
                "max_abs_error": number(c.max_abs_error),
                "rel_l2_error": number(c.rel_l2_error),
                "cosine": number(c.cosine),
                "new_nonfinite": c.new_nonfinite,
                "passed": c.passes(verification.tolerance),
            }
            for c in verification.comparisons
        ],
    }


def report_to_dict(report: "Report") -> Dict[str, Any]:
    """Every field of the JSON report (see the README's "JSON report" section)."""
    from . import __version__

    options = report.options
    before, after = report.min_runtime_version
    data: Dict[str, Any] = {
        "tool": "tflite-fp16",
        "version": __version__,
        "input": report.input,
        "output": report.output,
        "dry_run": report.dry_run,
        "size_before": report.size_before,
        "unchanged": report.unchanged,
    }
    if not report.dry_run:
        data["size_after"] = report.size_after
        data["layout"] = report.layout
    data.update(
        {
            "converted": [_converted(e) for e in report.converted],
            "kept": [_kept(e) for e in report.kept],
            "kept_by_reason": report.plan.kept_by_reason(),
            "dequantize_ops_added": report.dequantize_ops_added,
            "min_runtime_version": {"before": before, "after": after},
            "metadata": [metadata_to_dict(c) for c in report.plan.metadata if c.action != "left"],
            "warnings": list(report.warnings),
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
            "auto": search_to_dict(report.search),
        }
    )
    return data


def metadata_to_dict(change: Any) -> Dict[str, Any]:
    """One metadata entry the conversion changes (a dry run: would change)."""
    return {"name": change.name, "action": change.action, "before": change.before, "after": change.after}


def metadata_line(change: Any, dry_run: bool) -> str:
    before = f" (was {change.before})" if change.before is not None else ""
    after = f": {change.after}" if change.after is not None else ""
    return f"  metadata {change.name} {'would be ' if dry_run else ''}{change.action}{after}{before}"


def search_to_dict(search: Any) -> Optional[Dict[str, Any]]:
    if search is None:
        return None
    return {
        "tolerance": search.tolerance,
        "candidates": search.candidates,
        "runs": search.runs,
        "default_rel_l2_error": number(search.default_error),
        "bytes_kept_float32": search.bytes_kept,
        "kept": [
            {"tensors": [{"subgraph": t.subgraph, "tensor": t.tensor, "name": t.name} for t in c.tensors],
             "bytes": c.bytes_saved, "rel_l2_error_alone": number(c.error_alone), "worst": c.worst}
            for c in search.chosen
        ],
        "patterns": list(search.patterns),
    }


def dumps(data: Any) -> str:
    # ensure_ascii: names from the file reach the JSON escaped, so no control byte reaches a terminal
    return json.dumps(data, indent=2, ensure_ascii=True, allow_nan=False)


def _g(value: float) -> str:
    return f"{value:.3g}"


def converted_line(entry: "ConvertedTensor") -> str:
    line = (
        f"  converted subgraph {entry.subgraph} tensor {entry.tensor} {quote(entry.name)} {list(entry.shape)}: "
        f"{entry.elements} values, max abs error {_g(entry.max_abs_error)}, rel L2 {_g(entry.rel_l2_error)}"
    )
    if entry.saturated:
        line += f", {entry.saturated} saturated" + (" (an infinity among them)" if entry.infinity else "")
    if entry.flushed:
        line += f", {entry.flushed} flushed to 0"
    if entry.lossy:
        line += " [LOSSY]"
    return line


def kept_line(entry: "KeptTensor") -> str:
    ref = entry.tensor
    return f"  kept float32 subgraph {ref.subgraph} tensor {ref.tensor} {quote(ref.name)} ({entry.reason}): {entry.detail}"


def render_text(report: "Report", verbosity: int = 0) -> Tuple[List[str], List[str]]:
    """(lines for stdout, warning lines for stderr). ``verbosity``: -1 quiet, 0 default, 1 every tensor."""
    if verbosity < 0:
        return [], []
    out = [report.summary()]
    if verbosity > 0:
        out.extend(converted_line(e) for e in report.converted)
        out.extend(kept_line(e) for e in report.kept)
        out.extend(metadata_line(c, report.dry_run) for c in report.plan.metadata if c.action != "left")
    else:
        for reason in ("lossy", "tolerance"):
            notable = [k for k in report.kept if k.reason == reason]
            out.extend(kept_line(k) for k in notable[:NOTABLE_LINES])
            if len(notable) > NOTABLE_LINES:
                out.append(f"  and {len(notable) - NOTABLE_LINES} more kept float32 as {reason} (-v lists every tensor)")
    if report.search is not None:
        out.append(report.search.summary())
    if report.verification is not None:
        out.append(report.verification.summary())
        if verbosity > 0:
            out.extend(report.verification.lines())
        out.extend(f"  note: {n}" for n in report.verification.notes)
    err = [f"tflite-fp16: warning: {w}" for w in report.warnings]
    return out, err
