"""The verification: the original's outputs computed once, any converted model compared with them.

Two kinds of evidence, judged differently:

* the user's inputs (``inputs``): every output within ``tolerance`` under ``metric``
  (``rel_l2``, ``max_abs``, ``cosine``: 1 - cosine similarity, ``top1``: the share of
  rows whose arg-max over the last axis differs), or what ``check(reference,
  converted)`` says, and no new non-finite value;
* the probes (N(0,1), zeros, N(0,1) x 1000; out of distribution by design): breakage only,
  a new non-finite value or a relative L2 error beyond
  :data:`~tflite_fp16.verification.results.BREAKAGE_BOUND` (or ``tolerance``, when larger).
  The tolerance search, without inputs, holds the probes to the tolerance instead
  (``probe_rule="tolerance"``).

LiteRT runs in a child process (:mod:`~tflite_fp16.verification.session`): a crash in it is
an error of ours, never the end of the caller's process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputsError, UnsupportedModelError, VerificationError
from ..options import DEFAULT_TOLERANCE, METRICS, Metric
from ..text import quote
from .layers import layer_comparisons, pair_tensors, read_graph
from .metrics import Difference, compare_outputs
from .results import BREAKAGE_BOUND, OutputComparison, VerifyReport
from .samples import (
    MAX_PROBE_ELEMENTS,
    PROBE_SIZES,
    Inputs,
    InputSpec,
    Sample,
    SignatureSpec,
    check_shapes,
    given_samples,
    load_inputs,
    probe_samples,
    probe_shape,
)
from .session import DEFAULT_TIMEOUT, LiteRTFailure, LiteRTSession, model_source

__all__ = ["Check", "ModelInput", "Verifier", "verify"]

ModelInput = str | os.PathLike[str] | bytes | bytearray | memoryview
#: ``check(reference_outputs, converted_outputs) -> bool``, per signature and sample of the inputs.
Check = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], bool]
AUTO, BUILTIN = "AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"


class Verifier:
    """The original model's outputs on a set of samples, computed once, against which any number
    of converted models can be checked (:meth:`check`). Holds a LiteRT child process until
    :meth:`close` (or the end of a ``with`` block).

    Raises :class:`~tflite_fp16.errors.MissingDependencyError` without LiteRT,
    :class:`~tflite_fp16.errors.InvalidInputsError` for unusable inputs (or inputs on which the
    original's outputs are nowhere finite), and
    :class:`~tflite_fp16.errors.UnsupportedModelError` when LiteRT cannot run the original.
    """

    def __init__(
        self,
        original: ModelInput,
        inputs: Inputs = None,
        *,
        probes: bool | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        metric: Metric = "rel_l2",
        shapes: Mapping[str, Sequence[int]] | None = None,
        check: Check | None = None,
        probe_rule: Literal["breakage", "tolerance"] = "breakage",
        seed: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        self.original = model_source(original)
        self.tolerance = float(tolerance)
        self.metric: Metric = metric
        self.check_function = check
        self.probe_rule = probe_rule
        self.session = LiteRTSession(timeout)
        try:
            self._prepare(inputs, probes, dict(shapes or {}), seed)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End LiteRT's child process."""
        self.session.close()

    # ------------------------------------------------------------------ the original

    def _prepare(self, inputs: Inputs, probes: bool | None, shapes: dict[str, Sequence[int]], seed: int) -> None:
        notes: list[str] = []
        try:
            described = self.session.request("describe", self.original, AUTO)
        except LiteRTFailure as failure:
            raise UnsupportedModelError(
                f"LiteRT cannot load the original model, so it cannot be verified: {failure}"
            ) from None
        self.signatures = [
            SignatureSpec(key, tuple(InputSpec(n, tuple(s), d) for n, s, d in specs), tuple(outputs))
            for key, specs, outputs, _ in described
        ]
        self.subgraph_of = {key: subgraph for key, _, _, subgraph in described}
        loaded = load_inputs(inputs, self.signatures)
        notes.extend(loaded.notes)
        check_shapes(shapes, self.signatures)
        if probes is None:
            probes = inputs is None
        samples: list[Sample] = []
        for sig in self.signatures:
            if inputs is not None:
                samples.extend(given_samples(sig, loaded, notes))
            if probes:
                samples.extend(self._probes(sig, shapes, seed, notes))
        self.samples = samples
        self.session.request("samples", [(s.signature, s.feeds) for s in samples], keep=True)
        self.resolver, self.references = self._run_original(notes)
        self._check_comparable(notes)
        self.notes = tuple(notes)

    def _probes(
        self, sig: SignatureSpec, shapes: Mapping[str, Sequence[int]], seed: int, notes: list[str]
    ) -> list[Sample]:
        chosen: dict[str, tuple[int, ...]] = {}
        for spec in sig.inputs:
            given = next((shapes[name] for name in sig.array_names(spec) if name in shapes), None)
            chosen[spec.name] = tuple(given) if given is not None else spec.shape
        searched = [spec for spec in sig.inputs if any(d < 0 for d in chosen[spec.name])]
        if searched:
            size = self._probe_size(sig, chosen, searched)
            for spec in searched:
                chosen[spec.name] = probe_shape(spec, size)
            shown = ", ".join(f"{quote(spec.name)} {list(chosen[spec.name])}" for spec in searched)
            notes.append(
                f"dynamic dimensions of {sig.where}: the probes use {shown}, the first size LiteRT runs "
                f"(--shape NAME=D0,D1,... chooses)"
            )
        return probe_samples(sig, chosen, seed)

    def _probe_size(
        self, sig: SignatureSpec, chosen: Mapping[str, tuple[int, ...]], searched: Sequence[InputSpec]
    ) -> int:
        """The first of :data:`PROBE_SIZES` at which LiteRT prepares and runs the original."""
        failure: LiteRTFailure | None = None
        for size in PROBE_SIZES:
            shapes = {**chosen, **{spec.name: probe_shape(spec, size) for spec in searched}}
            if any(int(np.prod(shape)) > MAX_PROBE_ELEMENTS for shape in shapes.values()):
                break
            feeds = {spec.name: np.zeros(shapes[spec.name], np.dtype(spec.dtype)) for spec in sig.inputs}
            try:
                if self.session.request("try", self.original, AUTO, sig.key, feeds) > 0:
                    return size
                failure = LiteRTFailure("error", f"at size {size} every output is empty")
            except LiteRTFailure as error:
                failure = error
        names = ", ".join(f"{quote(spec.name)} {list(spec.shape)}" for spec in searched)
        raise UnsupportedModelError(
            f"LiteRT cannot run the original model on probes of any size for the dynamic dimensions of {names} "
            f"({sig.where}; tried {PROBE_SIZES[0]} to {PROBE_SIZES[-1]}: {failure}); give the sizes with "
            f"--shape NAME=D0,D1,... (shapes= in Python), or give --inputs"
        )

    def _run_original(self, notes: list[str]) -> tuple[str, list[dict[str, np.ndarray]]]:
        try:
            return AUTO, list(self.session.request("run", self.original, AUTO))
        except LiteRTFailure as first:
            try:
                outputs = list(self.session.request("run", self.original, BUILTIN))
            except LiteRTFailure:
                hint = ""
                if any(d < 0 for sig in self.signatures for spec in sig.inputs for d in spec.shape):
                    hint = " (its inputs have dynamic dimensions: --shape NAME=D0,D1,... or --inputs give their sizes)"
                raise UnsupportedModelError(
                    f"LiteRT cannot run the original model, so it cannot be verified: {first}{hint}"
                ) from None
            notes.append(f"XNNPACK cannot prepare the model ({first}); both models ran on LiteRT's builtin kernels")
            return BUILTIN, outputs

    def _check_comparable(self, notes: list[str]) -> None:
        """Refuse a run where no output value of the original is finite; say which samples give none."""
        comparable = []
        for sample, outputs in zip(self.samples, self.references):
            finite = any(np.isfinite(np.asarray(value)).any() for value in outputs.values()) if outputs else True
            empty = bool(outputs) and all(np.size(value) == 0 for value in outputs.values())
            comparable.append(finite)
            if not finite:
                where = f"{sample.signature}/{sample.name}" if sample.signature else sample.name
                what = "every output is empty" if empty else "every output value of the float32 model is non-finite"
                notes.append(f"on {quote(where)} {what}: nothing to compare there")
        for kind in ("inputs", "probe"):
            of_kind = [ok for sample, ok in zip(self.samples, comparable) if sample.kind == kind]
            if of_kind and not any(of_kind):
                if kind == "inputs":
                    raise InvalidInputsError(
                        "on every sample of the inputs the float32 model's outputs are non-finite (NaN or infinite) or "
                        "empty, so nothing can be compared: check the arrays (NaN, infinities, values beyond the "
                        "model's range, sizes)"
                    )
                raise UnsupportedModelError(
                    "on every probe the float32 model's outputs are non-finite (NaN or infinite) or empty, so nothing "
                    "can be compared: verify on your own inputs (--inputs), or give the probes' sizes (--shape)"
                )

    # ------------------------------------------------------------------ converted models

    def _judge(self, sample: Sample, output: str, difference: Difference, verdict: bool | None) -> OutputComparison:
        d = difference
        common = (
            sample.signature or "",
            output,
            sample.name,
            sample.kind,
            d.elements,
            d.compared,
            d.max_abs_error,
            d.rel_l2_error,
            d.cosine,
            d.top1_mismatch,
            d.new_nonfinite,
        )
        if verdict is not None:
            return OutputComparison(*common, "check", self.metric, d.error(self.metric), self.tolerance, verdict)
        if sample.kind == "probe" and self.probe_rule == "breakage":
            limit = max(BREAKAGE_BOUND, self.tolerance)
            passed = d.rel_l2_error <= limit and d.new_nonfinite == 0
            return OutputComparison(*common, "breakage", "rel_l2", d.rel_l2_error, limit, passed)
        error = d.error(self.metric)
        passed = error <= self.tolerance and d.new_nonfinite == 0
        return OutputComparison(*common, "tolerance", self.metric, error, self.tolerance, passed)

    def check(self, converted: ModelInput) -> VerifyReport:
        """Run ``converted`` (a path or bytes) on the same samples and judge every output."""
        try:
            outputs = self.session.request("run", model_source(converted), self.resolver)
        except LiteRTFailure as failure:
            raise VerificationError(
                f"LiteRT cannot run the converted model: {failure}; no output written", None
            ) from None
        comparisons = []
        for sample, reference, output in zip(self.samples, self.references, outputs):
            verdict = None
            if sample.kind == "inputs" and self.check_function is not None:
                verdict = bool(self.check_function(reference, output))
            for name in sorted(reference):
                difference = compare_outputs(reference[name], output.get(name, np.empty(0)))
                comparisons.append(self._judge(sample, name, difference, verdict))
        names = tuple(dict.fromkeys(sample.name for sample in self.samples))
        return VerifyReport(tuple(comparisons), self.tolerance, names, self.notes, self.metric)

    def with_layers(self, converted: ModelInput, report: VerifyReport) -> VerifyReport:
        """``report`` with the tensors of its worst sample compared, in execution order (both
        models run with every intermediate tensor kept, on LiteRT's builtin kernels)."""
        worst = report.worst
        if worst is None:
            return report
        index = next(
            i for i, s in enumerate(self.samples) if (s.signature or "") == worst.signature and s.name == worst.sample
        )
        sample = self.samples[index]
        subgraph = self.subgraph_of.get(sample.signature, 0)
        source = model_source(converted)
        where = f"{sample.signature}/{sample.name}" if sample.signature else sample.name
        try:
            original, candidate = read_graph(self.original, subgraph), read_graph(source, subgraph)
            pairs = pair_tensors(original, candidate)
            errors = self.session.request("layers", self.original, source, index, subgraph, pairs)
        except LiteRTFailure as failure:
            note = f"the layer comparison could not run: {failure}"
            return dataclasses.replace(report, notes=(*report.notes, note))
        layers = layer_comparisons(original, candidate, subgraph, pairs, errors)
        paths = _paths_to_outputs(original.operators, original.outputs, original.names, layers)
        return dataclasses.replace(report, layers=layers, layers_sample=where, layer_paths=paths)


def _paths_to_outputs(
    operators: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
    outputs: Sequence[int],
    names: Sequence[str],
    layers: Sequence[Any],
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """For each output of the subgraph, the positions in ``layers`` of the tensors it depends on."""
    writer = {t: o for o, (_, _, outs) in enumerate(operators) for t in outs}
    position = {layer.tensor: i for i, layer in enumerate(layers)}
    found = []
    for output in outputs:
        seen: set[int] = set()
        stack = [output]
        while stack:
            t = stack.pop()
            if t in seen or t < 0:
                continue
            seen.add(t)
            if t in writer:
                stack.extend(operators[writer[t]][1])
        found.append((names[output], tuple(sorted(position[t] for t in seen if t in position))))
    return tuple(found)


def verify(
    original: ModelInput,
    converted: ModelInput,
    inputs: Inputs = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    probes: bool | None = None,
    metric: Metric = "rel_l2",
    shapes: Mapping[str, Sequence[int]] | None = None,
    check: Check | None = None,
    layers: bool = False,
    seed: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
) -> VerifyReport:
    """Run ``original`` and ``converted`` (paths or bytes) in LiteRT, every signature, and compare
    their outputs.

    ``inputs``: an ``.npz`` or ``.npy`` path, or a mapping of arrays named after the inputs,
    judged by ``tolerance`` under ``metric`` (or by ``check(reference, converted)``, given
    each sample's outputs by name); without them (or with ``probes=True``) the three probes
    run, judged for breakage. ``shapes`` sets the dynamic dimensions of the probes
    (``{"audio": (1, 16000)}``); without it the first size LiteRT runs is used. ``layers``
    compares every intermediate tensor on the worst sample (``report.layers``). The report
    :attr:`~VerifyReport.passed` when every output passes its rule.

    Raises :class:`~tflite_fp16.errors.MissingDependencyError` without LiteRT,
    :class:`~tflite_fp16.errors.InvalidInputsError` for unusable inputs,
    :class:`~tflite_fp16.errors.UnsupportedModelError` when LiteRT cannot run
    the original, and :class:`~tflite_fp16.errors.VerificationError` when it
    cannot run the converted model.

    >>> from tflite_fp16 import rewrite_bytes
    >>> original = open("examples/filterbank.tflite", "rb").read()
    >>> converted, _ = rewrite_bytes(original)
    >>> verify(original, converted, inputs="examples/filterbank_calibration.npz", tolerance=1e-3).passed
    False
    """
    with Verifier(
        original,
        inputs,
        probes=probes,
        tolerance=tolerance,
        metric=metric,
        shapes=shapes,
        check=check,
        seed=seed,
        timeout=timeout,
    ) as verifier:
        report = verifier.check(converted)
        return verifier.with_layers(converted, report) if layers else report
