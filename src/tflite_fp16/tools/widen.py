"""Back to float32: undo a float16 conversion (ours or TensorFlow's).

Every constant FLOAT16 tensor that is read only through DEQUANTIZE becomes a
FLOAT32 constant holding its values widened (exactly: every float16 value is a
float32 value); whatever read a DEQUANTIZE output reads the constant; the
DEQUANTIZE ops and their output tensors are removed. A sparse FLOAT16
constant read by DENSIFY -> DEQUANTIZE becomes a sparse FLOAT32 constant read
by DENSIFY, which then writes the DEQUANTIZE's output. Operator codes that no
operator uses any more are removed. Tensor and operator-code indices are
renumbered wherever they are used (operators, subgraph inputs and outputs,
signatures, blockwise and multi-axis quantization details), so every
reference stays valid; the tensors added by a float16
rewrite are at the end of each subgraph, so the round trip restores the
original indices.

Why: TFLite Micro has no float16 DEQUANTIZE, and several converters
(tflite2onnx, TVM, Samsung ONE, NNEF-Tools) special-case it; holders of only
the float16 file can still use them.

>>> from tflite_fp16 import rewrite
>>> _ = rewrite("examples/small_cnn.tflite", "small_cnn_fp16.tflite")
>>> widen("small_cnn_fp16.tflite", "small_cnn_fp32.tflite").dequantize_ops_removed
10
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

import numpy as np

from ..conversion.metadata import MetadataChange, without_float16
from ..format.model import (
    DENSIFY,
    DEQUANTIZE,
    FLOAT16,
    FLOAT32,
    TENSOR_TYPES,
    Table,
    TFLiteModel,
    detail_references,
    op_of,
)
from ..pipeline import BytesJob, FileJob
from ..version import __version__

__all__ = ["WidenReport", "Widened", "WidenedTensor", "widen", "widen_bytes", "widen_model"]

PathLike = Union[str, "os.PathLike[str]"]


class WidenedTensor(NamedTuple):
    """A FLOAT16 constant that became FLOAT32 (indices are the input's)."""

    subgraph: int
    tensor: int
    name: str
    elements: int
    dequantize_ops: int  # DEQUANTIZE ops it fed (removed)
    sparse: bool


@dataclass(frozen=True)
class WidenReport:
    """What :func:`widen` did."""

    input: str
    output: str | None
    size_before: int
    size_after: int | None
    widened: tuple[WidenedTensor, ...]
    dequantize_ops_removed: int
    operator_codes_removed: int
    float16_kept: tuple[tuple[int, int, str, str], ...] = ()  # (subgraph, tensor, name, why) FLOAT16 constants left
    layout: str | None = None
    seconds: float = 0.0
    metadata: tuple[MetadataChange, ...] = ()  # reduced_precision_support removed, CONVERSION_METADATA updated
    versions_lowered: tuple[tuple[int, int, int], ...] = ()  # DEQUANTIZE codes: (index, version before, after)

    @property
    def unchanged(self) -> bool:
        return not self.widened

    def summary(self) -> str:
        if not self.widened:
            line = "nothing to widen: no float16 constant read only through DEQUANTIZE"
            if self.float16_kept:
                line += f" ({len(self.float16_kept)} float16 constants are read otherwise)"
            return line + ("; input copied unchanged" if self.output is not None else "")
        line = f"{len(self.widened)} tensors widened to float32, {self.dequantize_ops_removed} DEQUANTIZE ops removed"
        if self.size_after is not None:
            line += f"; {self.size_before:,} -> {self.size_after:,} bytes"
        if self.float16_kept:
            line += f"; {len(self.float16_kept)} float16 constants left (read otherwise)"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": "tflite-fp16",
            "version": __version__,
            "operation": "to_float32",
            "input": self.input,
            "output": self.output,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "unchanged": self.unchanged,
            "layout": self.layout,
            "widened": [t._asdict() for t in self.widened],
            "dequantize_ops_removed": self.dequantize_ops_removed,
            "operator_codes_removed": self.operator_codes_removed,
            "float16_kept": [
                {"subgraph": s, "tensor": t, "name": n, "reason": why} for s, t, n, why in self.float16_kept
            ],
            "metadata": [c.to_dict() for c in self.metadata],
            "operator_versions_lowered": [
                {"operator_code": index, "before": before, "after": after}
                for index, before, after in self.versions_lowered
            ],
            "seconds": round(self.seconds, 6),
        }


def _name(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace")


@dataclass
class _SubgraphEdit:
    """Decisions for one subgraph: tensor -> replacement, operators and tensors to remove."""

    alias: dict[int, int] = field(default_factory=dict)  # removed DEQUANTIZE output -> the widened constant
    removed_operators: set[int] = field(default_factory=set)
    removed_tensors: set[int] = field(default_factory=set)
    densify_output: dict[int, int] = field(default_factory=dict)  # DENSIFY operator -> its new output tensor
    widened: dict[int, tuple[int, bool]] = field(default_factory=dict)  # tensor -> (DEQUANTIZE ops removed, sparse)


def _decide(
    model: TFLiteModel, s: int, ops_of_codes: list[int], kept: list[tuple[int, int, str, str]]
) -> _SubgraphEdit:
    subgraph = model.subgraphs[s]
    tensors = subgraph.tables("tensors")
    operators = subgraph.tables("operators")
    readers: dict[int, list[int]] = defaultdict(list)
    writers: Counter[int] = Counter()
    intermediates: set[int] = set()  # tensors an operator names as its intermediates (LSTM's, say)
    for o, op in enumerate(operators):
        for i in set(op.ints("inputs")):
            if i >= 0:
                readers[i].append(o)
        writers.update(i for i in op.ints("outputs") if i >= 0)
        intermediates.update(op.ints("intermediates"))
    boundary = set(subgraph.ints("inputs")) | set(subgraph.ints("outputs"))
    # Tensors another tensor's blockwise or multi-axis quantization names by index: they stay as they are.
    named = {index for tensor in tensors for _, index in detail_references(tensor)}
    edit = _SubgraphEdit()

    def is_dequantize_of(o: int, source: int) -> int | None:
        """The FLOAT32 output of operator ``o`` if it is a DEQUANTIZE of ``source`` alone whose output
        only it writes, that is no subgraph input or output, variable (an LSTM state TensorFlow
        initialises this way must stay written), intermediate or quantization detail: the one
        output a constant can stand in for. Else None."""
        op = operators[o]
        if (
            ops_of_codes[op.get("opcode_index")] != DEQUANTIZE
            or op.ints("inputs") != [source]
            or len(op.ints("outputs")) != 1
        ):
            return None
        (output,) = op.ints("outputs")
        if (
            output < 0
            or tensors[output].get("type") != FLOAT32
            or writers[output] != 1
            or output in boundary
            or output in named
            or output in intermediates
            or tensors[output].get("is_variable")
        ):
            return None
        return output

    for t, tensor in enumerate(tensors):
        if tensor.get("type") != FLOAT16 or model.buffer_data(tensor.get("buffer")).size == 0:
            continue
        name = _name(tensor.get("name"))
        why = ""
        if tensor.get("external_buffer"):
            why = "its data lives in an external buffer"
        elif t in boundary:
            why = "a subgraph input or output"
        elif t in named:
            why = "another tensor's blockwise or multi-axis quantization names it"
        elif tensor.get("is_variable") or t in writers or t in intermediates:
            why = "a variable, written by an operator, or an operator's intermediate"
        elif not readers.get(t):
            why = "no operator reads it"
        if why:
            kept.append((s, t, name, why))
            continue
        sparse = tensor.has("sparsity")
        if sparse:
            # sparse FLOAT16 -> DENSIFY -> FLOAT16 dense -> DEQUANTIZE -> FLOAT32
            (only,) = readers[t] if len(readers[t]) == 1 else (None,)
            densify = operators[only] if only is not None else None
            if (
                densify is None
                or ops_of_codes[densify.get("opcode_index")] != DENSIFY
                or len(densify.ints("outputs")) != 1
            ):
                kept.append((s, t, name, "sparse, and not read by one DENSIFY"))
                continue
            (dense,) = densify.ints("outputs")
            dense_readers = readers.get(dense, [])
            outputs = [is_dequantize_of(o, dense) for o in dense_readers]
            if (
                dense < 0
                or dense in boundary
                or writers[dense] != 1
                or dense in intermediates
                or dense in named
                or len(dense_readers) != 1
                or outputs[0] is None
            ):
                kept.append(
                    (
                        s,
                        t,
                        name,
                        "its DENSIFY output is not a plain tensor read by one DEQUANTIZE alone (another "
                        "writer or reader, an intermediate, a subgraph input or output)",
                    )
                )
                continue
            edit.densify_output[only] = outputs[0]  # type: ignore[index]
            edit.removed_operators.add(dense_readers[0])
            edit.removed_tensors.add(dense)
            edit.widened[t] = (1, True)
            continue
        outputs = [is_dequantize_of(o, t) for o in readers[t]]
        if any(output is None for output in outputs):
            kept.append(
                (
                    s,
                    t,
                    name,
                    "read by something other than a DEQUANTIZE into a float32 tensor only it writes "
                    "(not a variable, an intermediate, a subgraph input or output)",
                )
            )
            continue
        for o, output in zip(readers[t], outputs):
            edit.alias[output] = t  # type: ignore[index]
            edit.removed_operators.add(o)
            edit.removed_tensors.add(output)  # type: ignore[arg-type]
        edit.widened[t] = (len(outputs), False)
    return edit


class Widened(NamedTuple):
    """What :func:`widen_model` returns."""

    model: TFLiteModel
    widened: list[WidenedTensor]
    dequantize_ops_removed: int
    operator_codes_removed: int
    float16_kept: list[tuple[int, int, str, str]]  # (subgraph, tensor, name, why)
    metadata: tuple[MetadataChange, ...] = ()  # the float16 declarations undone
    versions_lowered: tuple[tuple[int, int, int], ...] = ()  # (operator code, version before, after)


def widen_model(model: TFLiteModel) -> Widened:
    """The float32 model, the widened tensors, DEQUANTIZE ops removed, operator codes removed, the
    FLOAT16 constants left (with why) and the metadata changed."""
    codes = model.operator_codes
    ops_of_codes = [op_of(code) for code in codes]
    kept: list[tuple[int, int, str, str]] = []
    edits = [_decide(model, s, ops_of_codes, kept) for s in range(len(model.subgraphs))]
    widened = [
        WidenedTensor(
            s,
            t,
            _name(model.subgraphs[s].tables("tensors")[t].get("name")),
            model.buffer_data(model.subgraphs[s].tables("tensors")[t].get("buffer")).size // 2,
            n,
            sparse,
        )
        for s, edit in enumerate(edits)
        for t, (n, sparse) in sorted(edit.widened.items())
    ]
    if not widened:
        return Widened(model, [], 0, 0, kept)

    # Buffers: widened once; in place when only widened tensors read the bytes, else a new buffer.
    buffers = list(model.buffers)
    widened_by_buffer: dict[int, list[tuple[int, int]]] = defaultdict(list)
    others: set[int] = {entry.get("buffer") for entry in model.root.tables("metadata")} | set(
        model.root.ints("metadata_buffer")
    )
    for s, subgraph in enumerate(model.subgraphs):
        for t, tensor in enumerate(subgraph.tables("tensors")):
            b = tensor.get("buffer")
            if t in edits[s].widened:
                widened_by_buffer[b].append((s, t))
            elif model.buffer_data(b).size:
                others.add(b)
    target: dict[tuple[int, int], int] = {}
    for b, refs in widened_by_buffer.items():
        data = np.ascontiguousarray(model.buffer_data(b)).view("<f2").astype("<f4").view(np.uint8)
        if b in others:
            buffers.append(Table("Buffer", {"data": data}))
            index = len(buffers) - 1
        else:
            buffers[b] = Table(
                "Buffer", {**{k: v for k, v in buffers[b].fields.items() if k not in ("offset", "size")}, "data": data}
            )
            index = b
        for ref in refs:
            target[ref] = index

    subgraphs = [
        _edit_subgraph(subgraph, edits[s], {t: b for (sg, t), b in target.items() if sg == s})
        for s, subgraph in enumerate(model.subgraphs)
    ]
    removed_ops = sum(len(e.removed_operators) for e in edits)

    # Operator codes no operator uses any more (because of the removal) go, and indices follow.
    used_before = {op.get("opcode_index") for sg in model.subgraphs for op in sg.tables("operators")}
    used_after = {op.get("opcode_index") for sg in subgraphs for op in sg.tables("operators")}
    dropped = sorted(used_before - used_after)
    code_index = {old: old - sum(1 for d in dropped if d < old) for old in range(len(codes)) if old not in dropped}
    if dropped:
        subgraphs = [
            sg.replace(operators=tuple(_renumbered(op, "opcode_index", code_index) for op in sg.tables("operators")))
            for sg in subgraphs
        ]
    kept_codes = [code for i, code in enumerate(codes) if i not in dropped]
    kept_codes, lowered = _lowered_versions(kept_codes, subgraphs)
    root = model.root.replace(
        subgraphs=tuple(subgraphs),
        buffers=tuple(buffers),
        operator_codes=tuple(kept_codes),
    )
    maps = [_tensor_map(len(model.subgraphs[s].tables("tensors")), edits[s]) for s in range(len(edits))]
    signatures = model.root.tables("signature_defs")
    if signatures:
        root = root.replace(
            signature_defs=tuple(_remap_signature(sig, maps[sig.get("subgraph_index")]) for sig in signatures)
        )
    float16_left = any(t.get("type") == FLOAT16 for sg in subgraphs for t in sg.tables("tensors"))
    root, metadata = without_float16(model, root, float16_left)
    return Widened(
        TFLiteModel(root=root, trailing=model.trailing, shared=model.shared),
        widened,
        removed_ops,
        len(dropped),
        kept,
        metadata,
        tuple(lowered),
    )


def _dequantize_version(tensor: Table) -> int:
    """The DEQUANTIZE version an input of this type needs, by TensorFlow's rules (op_version.cc)."""
    tensor_type = tensor.get("type")
    if tensor_type == TENSOR_TYPES.get("INT4"):
        return 6
    if tensor_type in (FLOAT16, TENSOR_TYPES["INT16"]):
        return 3
    if tensor_type == TENSOR_TYPES["INT8"]:
        quantization = tensor.fields.get("quantization")
        per_channel = quantization is not None and len(quantization.fields.get("scale", ())) > 1
        return 5 if per_channel else 2
    return 1


def _lowered_versions(codes: list[Table], subgraphs: list[Table]) -> tuple[list[Table], list[tuple[int, int, int]]]:
    """The DEQUANTIZE codes at the version the DEQUANTIZE ops left need (a float16 rewrite raised a
    shared code to 3 for its float16 inputs; once they are gone, the int8 ones need less), and
    (code index, version before, after) of each code lowered. Never raised."""
    needed: dict[int, int] = {}
    for subgraph in subgraphs:
        tensors = subgraph.tables("tensors")
        for op in subgraph.tables("operators"):
            index = op.get("opcode_index")
            if op_of(codes[index]) != DEQUANTIZE:
                continue
            inputs = [i for i in op.ints("inputs") if i >= 0]
            version = max((_dequantize_version(tensors[i]) for i in inputs), default=1)
            needed[index] = max(needed.get(index, 1), version)
    lowered = []
    for index, version in needed.items():
        current = codes[index].get("version")
        if version < current:
            codes[index] = codes[index].replace(version=version)
            lowered.append((index, current, version))
    return codes, sorted(lowered)


def _tensor_map(count: int, edit: _SubgraphEdit) -> dict[int, int]:
    """Old tensor index -> new index (aliased tensors map to their constant's new index)."""
    new: dict[int, int] = {}
    position = 0
    for t in range(count):
        if t in edit.removed_tensors:
            continue
        new[t] = position
        position += 1
    for removed, constant in edit.alias.items():
        new[removed] = new[constant]
    return new


def _edit_subgraph(subgraph: Table, edit: _SubgraphEdit, buffers: Mapping[int, int]) -> Table:
    if not edit.widened:
        return subgraph
    tensors = subgraph.tables("tensors")
    mapping = _tensor_map(len(tensors), edit)

    def remap(indices: list[int]) -> tuple[int, ...]:
        return tuple(i if i < 0 else mapping[i] for i in indices)

    new_tensors = []
    for t, tensor in enumerate(tensors):
        if t in edit.removed_tensors:
            continue
        if t in edit.widened:
            tensor = tensor.replace(type=FLOAT32, buffer=buffers[t])
        if detail_references(tensor):
            tensor = _remap_details(tensor, mapping)
        new_tensors.append(tensor)
    operators = []
    for o, op in enumerate(subgraph.tables("operators")):
        if o in edit.removed_operators:
            continue
        outputs = op.ints("outputs")
        if o in edit.densify_output:
            outputs = [edit.densify_output[o]]
        changes: dict[str, Any] = {"inputs": remap(op.ints("inputs")), "outputs": remap(outputs)}
        if op.has("intermediates"):
            changes["intermediates"] = remap(op.ints("intermediates"))
        operators.append(op.replace(**changes))
    return subgraph.replace(
        tensors=tuple(new_tensors),
        operators=tuple(operators),
        inputs=remap(subgraph.ints("inputs")),
        outputs=remap(subgraph.ints("outputs")),
    )


def _remap_details(tensor: Table, mapping: dict[int, int]) -> Table:
    """``tensor`` with the tensor indices its quantization details name renumbered."""
    quantization = tensor.fields["quantization"]
    details = quantization.fields["details"]
    details = details.replace(**{field: mapping[index] for field, index in detail_references(tensor)})
    return tensor.replace(quantization=quantization.replace(details=details))


def _remap_signature(signature: Table, mapping: dict[int, int]) -> Table:
    changes = {}
    for name in ("inputs", "outputs"):
        entries = signature.tables(name)
        if entries:
            changes[name] = tuple(_renumbered(e, "tensor_index", mapping) for e in entries)
    return signature.replace(**changes) if changes else signature


def _renumbered(table: Table, name: str, mapping: Mapping[int, int]) -> Table:
    """``table`` with index field ``name`` renumbered; untouched when the index stays (a field the
    file omits stays omitted, so an unchanged table is written as it was read)."""
    old = table.get(name)
    new = mapping.get(old, old)
    return table if new == old else table.replace(**{name: new})


def widen(path_in: PathLike, path_out: PathLike | None, *, layout: str = "auto") -> WidenReport:
    """Write the float32 version of the float16 model ``path_in`` to ``path_out`` (``None``: a dry run).

    When there is nothing to widen, the output gets the input's bytes.

    >>> from tflite_fp16 import rewrite
    >>> _ = rewrite("examples/small_cnn.tflite", "small_cnn_fp16.tflite")
    >>> print(widen("small_cnn_fp16.tflite", "small_cnn_fp32.tflite").summary())
    10 tensors widened to float32, 10 DEQUANTIZE ops removed; 15,024 -> 20,672 bytes
    """
    start = time.perf_counter()
    job = FileJob(path_in, path_out)
    with job.model() as model:
        result = widen_model(model)
        size_after: int | None = None
        chosen = None
        if path_out is not None:
            committed = job.commit(result.model if result.widened else None, layout)
            size_after, chosen = committed.size_after, committed.layout
    return _report(
        os.fspath(job.path_in),
        os.fspath(path_out) if path_out is not None else None,
        job.size_before,
        size_after,
        chosen,
        result,
        start,
    )


def widen_bytes(data: bytes | bytearray | memoryview, *, layout: str = "auto") -> tuple[bytes, WidenReport]:
    """:func:`widen` for a model held in memory."""
    start = time.perf_counter()
    job = BytesJob(data)
    with job.model() as model:
        result = widen_model(model)
        output, committed = job.commit(result.model if result.widened else None, layout)
    return output, _report(
        "<bytes>", "<bytes>", committed.size_before, committed.size_after, committed.layout, result, start
    )


def _report(
    source: str,
    target: str | None,
    size_before: int,
    size_after: int | None,
    layout: str | None,
    result: Widened,
    start: float,
) -> WidenReport:
    return WidenReport(
        source,
        target,
        size_before,
        size_after,
        tuple(result.widened),
        result.dequantize_ops_removed,
        result.operator_codes_removed,
        tuple(result.float16_kept),
        layout,
        time.perf_counter() - start,
        result.metadata,
        result.versions_lowered,
    )
