"""What a verification found: every output of every sample compared and judged, the tensors
where the error enters, and the next step when it failed."""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from typing import Any, Literal

from ..options import BREAKAGE_BOUND, Metric
from ..text import json_number, quote

__all__ = ["BREAKAGE_BOUND", "LayerComparison", "OutputComparison", "SampleKind", "VerifyReport"]


SampleKind = Literal["inputs", "probe"]
Rule = Literal["tolerance", "breakage", "check"]


@dataclass(frozen=True)
class OutputComparison:
    """One output of one signature on one sample: how far the converted model's value is from
    the original's, and the rule that judged it."""

    signature: str  # the signature key ("" for a model without signatures)
    output: str
    sample: str  # "normal", "zeros", "large", or "inputs", "inputs[i]"
    kind: SampleKind  # the user's inputs, or a probe
    elements: int
    compared: int  # values the float32 output has finite (0: nothing to compare)
    max_abs_error: float
    rel_l2_error: float  # ||converted - original|| / ||original|| over positions finite in both
    cosine: float
    top1_mismatch: float  # share of rows whose arg-max (last axis) differs
    new_nonfinite: int  # values non-finite in the converted output where the original's are finite
    rule: Rule  # "tolerance" (inputs), "breakage" (probes) or "check" (the caller's function)
    metric: Metric  # what ``error`` measures
    error: float  # the error under ``metric`` (relative L2 for the breakage rule)
    limit: float  # the largest error the rule accepts
    passed: bool

    @property
    def where(self) -> str:
        prefix = f"{self.signature}/" if self.signature else ""
        return f"{prefix}{self.output} on {self.sample}"

    @property
    def judged_by(self) -> str:
        """The rule in words, e.g. ``"tolerance 0.001 (rel_l2)"``."""
        if self.rule == "check":
            return "the check function"
        if self.rule == "breakage":
            return f"breakage (relative L2 <= {self.limit:g}, no new non-finite values)"
        return f"tolerance {self.limit:g} ({self.metric})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "output": self.output,
            "sample": self.sample,
            "kind": self.kind,
            "elements": self.elements,
            "compared": self.compared,
            "max_abs_error": json_number(self.max_abs_error),
            "rel_l2_error": json_number(self.rel_l2_error),
            "cosine": json_number(self.cosine),
            "top1_mismatch": json_number(self.top1_mismatch),
            "new_nonfinite": self.new_nonfinite,
            "rule": self.rule,
            "metric": self.metric,
            "error": json_number(self.error),
            "limit": json_number(self.limit),
            "passed": self.passed,
        }


@dataclass(frozen=True)
class LayerComparison:
    """One tensor both models compute (or hold), compared on one sample, in execution order."""

    subgraph: int
    tensor: int  # its index in the original model
    name: str
    operator: str  # what writes it, e.g. "3 CONV_2D"; "input" for a subgraph input, "constant" for a constant
    rel_l2_error: float
    max_abs_error: float
    new_nonfinite: int
    input_error: float  # the largest relative L2 error among the operator's non-constant inputs
    constants: tuple[str, ...]  # the constants the operator reads (float16 in the converted model)
    kept_float32: tuple[str, ...]  # the constants the operator reads that stayed float32
    sources: tuple[int, ...] = ()  # the operator's non-constant inputs (tensor indices)
    constant_tensors: tuple[int, ...] = ()  # the tensor indices of ``constants``

    @property
    def growth(self) -> float:
        """How much the operator multiplies the error it is given (inf when it is given none)."""
        if self.input_error > 0:
            return self.rel_l2_error / self.input_error
        return math.inf if self.rel_l2_error > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "subgraph": self.subgraph,
            "tensor": self.tensor,
            "name": self.name,
            "operator": self.operator,
            "rel_l2_error": json_number(self.rel_l2_error),
            "max_abs_error": json_number(self.max_abs_error),
            "new_nonfinite": self.new_nonfinite,
            "input_rel_l2_error": json_number(self.input_error),
            "constants": list(self.constants),
            "kept_float32": list(self.kept_float32),
            "inputs": list(self.sources),
        }


@dataclass(frozen=True)
class VerifyReport:
    """Every output of every signature on every sample, compared and judged."""

    comparisons: tuple[OutputComparison, ...]
    tolerance: float
    samples: tuple[str, ...]
    notes: tuple[str, ...] = ()
    metric: Metric = "rel_l2"
    breakage_bound: float = BREAKAGE_BOUND
    layers: tuple[LayerComparison, ...] = ()  # with layers=True: the tensors of the worst sample
    layers_sample: str = ""  # the sample ``layers`` ran on ("signature/sample")
    # For each output of that signature's subgraph: its name and the positions in ``layers`` of the
    # tensors it depends on (what a plot draws along the graph).
    layer_paths: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    @property
    def failures(self) -> tuple[OutputComparison, ...]:
        return tuple(c for c in self.comparisons if not c.passed)

    @property
    def worst_rel_l2_error(self) -> float:
        return max((c.rel_l2_error for c in self.comparisons), default=0.0)

    @property
    def worst(self) -> OutputComparison | None:
        """The comparison furthest from passing: failures first, new non-finite values first,
        then the error relative to its limit."""

        def badness(c: OutputComparison) -> tuple[bool, int, float]:
            ratio = c.error / c.limit if c.limit > 0 else (math.inf if c.error > 0 else 0.0)
            return (not c.passed, c.new_nonfinite, ratio)

        return max(self.comparisons, key=badness, default=None)

    def _scope(self) -> str:
        outputs = len({(c.signature, c.output) for c in self.comparisons})
        given = list(dict.fromkeys(c.sample for c in self.comparisons if c.kind == "inputs"))
        probes = list(dict.fromkeys(c.sample for c in self.comparisons if c.kind == "probe"))
        parts = []
        if given:
            rule = (
                "the check function"
                if any(c.rule == "check" for c in self.comparisons)
                else f"tolerance {self.tolerance:g} ({self.metric})"
            )
            parts.append(f"{len(given)} sample{'s' if len(given) != 1 else ''} of the inputs at {rule}")
        if probes:
            bound = max(self.breakage_bound, self.tolerance)
            parts.append(
                f"{len(probes)} probe{'s' if len(probes) != 1 else ''} for breakage (relative L2 <= {bound:g})"
                if any(c.rule == "breakage" for c in self.comparisons)
                else f"{len(probes)} probe{'s' if len(probes) != 1 else ''} at tolerance {self.tolerance:g} ({self.metric})"
            )
        return f"{outputs} output{'s' if outputs != 1 else ''} x " + " and ".join(parts)

    def summary(self) -> str:
        """One line: passed or failed, what was run and judged how, and the worst output."""
        head = f"verify: {'passed' if self.passed else 'FAILED'} ({self._scope()})"
        worst = self.worst
        if worst is None:
            return head + "; the model has no outputs"
        text = (
            f"{head}; worst {quote(worst.where)}: relative L2 error {worst.rel_l2_error:.3g}, "
            f"max abs error {worst.max_abs_error:.3g}"
        )
        if worst.metric not in ("rel_l2", "max_abs") and worst.rule == "tolerance":
            text += f", {worst.metric} error {worst.error:.3g}"
        nonfinite = sum(c.new_nonfinite for c in self.comparisons)
        if nonfinite:
            text += f", {nonfinite} new non-finite values"
        return text

    def lines(self) -> list[str]:
        """One line per output and sample, with the rule that judged it."""
        out = []
        for c in self.comparisons:
            mark = "ok  " if c.passed else "FAIL"
            line = (
                f"  {mark} {quote(c.where)}: rel L2 {c.rel_l2_error:.3g}, max abs {c.max_abs_error:.3g}, "
                f"cosine {c.cosine:.6f}"
            )
            if c.metric == "top1":
                line += f", top-1 mismatch {c.top1_mismatch:.3g}"
            if c.new_nonfinite:
                line += f", {c.new_nonfinite} new non-finite"
            if not c.compared:
                line += ", nothing to compare (the float32 output is non-finite everywhere)"
            out.append(f"{line} [{c.kind}: {c.judged_by}]")
        return out

    @property
    def entry(self) -> LayerComparison | None:
        """Where the error enters (with ``layers``): the first operator, in execution order, whose
        output is beyond the limit of the worst sample (or has new non-finite values)."""
        worst = self.worst
        limit = worst.limit if worst is not None and worst.rule != "check" else self.tolerance
        for layer in self.layers:
            if layer.operator not in ("input", "constant") and (layer.new_nonfinite or layer.rel_l2_error > limit):
                return layer
        return None

    def origins(self, layer: LayerComparison) -> list[LayerComparison]:
        """Where the error of ``layer`` comes from: ``layer`` itself when its operator reads float16
        constants, else the nearest operators upstream that read some and whose outputs already
        differ (an epsilon flushed to zero before a LOG, say)."""
        if layer.constants:
            return [layer]
        by_tensor = {item.tensor: item for item in self.layers}
        found: list[LayerComparison] = []
        seen: set[int] = set()
        frontier = list(layer.sources)
        while frontier and not found:
            upstream: list[int] = []
            for t in frontier:
                item = by_tensor.get(t)
                if t in seen or item is None:
                    continue
                seen.add(t)
                if item.constants and (item.rel_l2_error > 0 or item.new_nonfinite):
                    found.append(item)
                else:
                    upstream.extend(item.sources)
            frontier = upstream
        return found

    def culprits(self) -> tuple[str, ...]:
        """The float16 constants to keep float32 (with ``layers``): those read where the error
        enters (:attr:`entry`, or the nearest operators upstream of it that change their output)."""
        entry = self.entry
        if entry is None:
            return ()
        return tuple(dict.fromkeys(name for origin in self.origins(entry) for name in origin.constants))

    def jumps(self, count: int = 5) -> list[LayerComparison]:
        """The operators that add the most error (with ``layers``), in execution order: those whose
        output error is at least twice their inputs' and a tenth of the tolerance or more."""
        floor = self.tolerance / 10
        found = [
            layer
            for layer in self.layers
            if layer.operator not in ("input", "constant")
            and (layer.new_nonfinite or (layer.rel_l2_error >= floor and layer.growth >= 2))
        ]
        largest = sorted(found, key=lambda layer: (layer.new_nonfinite > 0, layer.rel_l2_error - layer.input_error))
        chosen = {id(layer) for layer in largest[-count:]}
        return [layer for layer in found if id(layer) in chosen]

    def layer_lines(self) -> list[str]:
        """Where the error enters, for people: the first operator beyond the limit and the largest jumps."""
        if not self.layers:
            return []
        out = [f"  layers on {quote(self.layers_sample)} ({len(self.layers)} tensors compared, in execution order):"]
        for layer in self.jumps():
            line = (
                f"    {layer.operator} -> {quote(layer.name)}: rel L2 {layer.rel_l2_error:.3g} "
                f"(its inputs {layer.input_error:.3g})"
            )
            if layer.new_nonfinite:
                line += f", {layer.new_nonfinite} new non-finite"
            if layer.constants:
                line += f"; reads {', '.join(quote(name) for name in layer.constants[:3])}"
            out.append(line)
        entry = self.entry
        if entry is not None:
            out.append(f"  the error first exceeds the limit at {entry.operator} -> {quote(entry.name)}")
        return out

    def hint(self) -> str:
        """The next step after a failure, in one line (empty when it passed)."""
        if self.passed:
            return ""
        entry, culprits = self.entry, self.culprits()
        if entry is not None and culprits:
            keeps = " ".join(f"--keep {_shell_quote(glob.escape(name))}" for name in culprits[:3])
            return (
                f"next: keep float32 the constants where the error enters ({keeps}; it first exceeds the limit at "
                f"{entry.operator}), or let --auto choose what to keep"
            )
        if self.layers:
            return "next: --auto searches which constants to keep float32 to meet the tolerance"
        return (
            "next: --layers shows where the error enters (and the constant to --keep); "
            "--auto keeps float32 the constants that cause it"
        )

    def to_dict(self) -> dict[str, Any]:
        """The verification as JSON-ready data (the report's ``verify`` section)."""
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "metric": self.metric,
            "breakage_bound": self.breakage_bound,
            "samples": list(self.samples),
            "worst_rel_l2_error": json_number(self.worst_rel_l2_error),
            "notes": list(self.notes),
            "outputs": [c.to_dict() for c in self.comparisons],
            "layers_sample": self.layers_sample or None,
            "layers": [layer.to_dict() for layer in self.layers],
            "hint": self.hint() or None,
        }


def _shell_quote(name: str) -> str:
    """``name`` for a shell command line: single-quoted, with non-printable characters escaped."""
    shown = quote(name)
    return shown if "\\" not in shown else f"$'{shown[1:-1]}'"
