"""Apply a :class:`~tflite_fp16.conversion.plan.Plan` to a model, returning a new model.

Original tensors keep their indices (new tensors are appended). Each operator
list is rebuilt in one pass: first one DEQUANTIZE op per converted constant
the subgraph reads, in the order of first use (TensorFlow's placement: the
constant DEQUANTIZE ops lead the subgraph, so a delegate that takes the rest
sees one contiguous graph rather than one cut at every DEQUANTIZE left on the
CPU), then the original operators in their order, reading the DEQUANTIZE
outputs. A sparse constant's DENSIFY keeps its place, with its DEQUANTIZE
right after it. No index is patched after the fact; the input model is never
changed. The metadata the plan decided (see :mod:`tflite_fp16.conversion.metadata`) is
written here too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..format.model import DEQUANTIZE, FLOAT16, FLOAT32, Table, TFLiteModel
from .metadata import (
    CONVERSION_METADATA_KEY,
    FP16_ACCUMULATE_FP16,
    FP16_ACCUMULATE_FP32,
    REDUCED_PRECISION_KEY,
    ConversionMetadataData,
    set_entry,
)
from .plan import DEQUANTIZE_MIN_VERSION, MIN_RUNTIME_VERSION_KEY, Plan

__all__ = ["apply_plan"]

DEQUANTIZED_SUFFIX = b"/dequantize"
DENSIFIED_SUFFIX = b"/densify_fp16"


def apply_plan(model: TFLiteModel, plan: Plan, float16_data: Mapping[int, Any]) -> TFLiteModel:
    """The rewritten model. ``float16_data`` maps each converted buffer index to its float16
    data: an array, or a :class:`~tflite_fp16.conversion.cast.Float16Cast` the writer casts as it writes."""
    if not plan.conversions:
        return model
    buffers = list(model.buffers)
    codes = list(model.operator_codes)

    # Buffers: cast in place, or appended when the original is still read as it is.
    target_buffer: dict[tuple[int, int], int] = {}
    for conversion in plan.conversions:
        data = float16_data[conversion.buffer]
        if conversion.new_buffer:
            index = len(buffers)
            buffers.append(Table("Buffer", {"data": data}))
        else:
            index = conversion.buffer
            buffers[index] = Table("Buffer", {**buffers[index].fields, "data": data})
        for ref in conversion.tensors:
            target_buffer[(ref.subgraph, ref.tensor)] = index

    # Operator code: reuse DEQUANTIZE, at version 3 or above.
    if plan.dequantize_opcode is None:
        dequantize_code = len(codes)
        codes.append(
            Table(
                "OperatorCode",
                {"deprecated_builtin_code": DEQUANTIZE, "version": DEQUANTIZE_MIN_VERSION, "builtin_code": DEQUANTIZE},
            )
        )
    else:
        dequantize_code = plan.dequantize_opcode
        code = codes[dequantize_code]
        codes[dequantize_code] = code.replace(
            version=max(code.get("version"), DEQUANTIZE_MIN_VERSION),
            builtin_code=DEQUANTIZE,
            deprecated_builtin_code=DEQUANTIZE,
        )

    empty_buffer = 0 if model.buffer_data(0).size == 0 and not buffers[0].get("offset") else None
    if empty_buffer is None:
        empty_buffer = len(buffers)
        buffers.append(Table("Buffer", {}))

    # Grouped by subgraph once: the work is linear in subgraphs plus conversions.
    converted_in: dict[int, dict[int, int]] = defaultdict(dict)
    for (sg, t), b in target_buffer.items():
        converted_in[sg][t] = b
    sparse_in: dict[int, set[int]] = defaultdict(set)
    for ref in plan.sparse_tensors:
        sparse_in[ref.subgraph].add(ref.tensor)
    subgraphs = []
    rewritten: dict[tuple[int, tuple[tuple[int, int], ...], tuple[int, ...]], Table] = {}
    for s, subgraph in enumerate(model.subgraphs):
        converted = converted_in.get(s)
        if not converted:
            subgraphs.append(subgraph)
            continue
        # A subgraph the input uses at several places, with the same conversions, is rewritten
        # once, so the output shares it too.
        key = (id(subgraph), tuple(sorted(converted.items())), tuple(sorted(sparse_in[s])))
        new = rewritten.get(key)
        if new is None:
            new = rewritten[key] = _rewrite_subgraph(subgraph, converted, sparse_in[s], dequantize_code, empty_buffer)
        subgraphs.append(new)

    root = model.root
    metadata = list(root.tables("metadata"))
    changed = {change.name.encode() for change in plan.metadata if change.action != "left"}
    if changed:
        # What tensors read: a metadata buffer they share gets a new buffer rather than new bytes.
        tensor_buffers = {t.get("buffer") for sg in model.subgraphs for t in sg.tables("tensors")}
    if plan.min_runtime_version is not None:
        set_entry(
            metadata,
            buffers,
            tensor_buffers,
            MIN_RUNTIME_VERSION_KEY,
            _raised_version(model, metadata, plan.min_runtime_version[1]),
        )
    if REDUCED_PRECISION_KEY in changed:
        value = FP16_ACCUMULATE_FP16 if plan.fp16_compute else FP16_ACCUMULATE_FP32
        # Before CONVERSION_METADATA, where TensorFlow puts it.
        set_entry(
            metadata,
            buffers,
            tensor_buffers,
            REDUCED_PRECISION_KEY,
            np.frombuffer(value, np.uint8),
            before=CONVERSION_METADATA_KEY,
        )
    if plan.conversion_metadata is not None:
        set_entry(
            metadata, buffers, tensor_buffers, CONVERSION_METADATA_KEY, ConversionMetadataData(plan.conversion_metadata)
        )
    if metadata:
        root = root.replace(metadata=tuple(metadata))
    root = root.replace(operator_codes=tuple(codes), subgraphs=tuple(subgraphs), buffers=tuple(buffers))
    return TFLiteModel(root=root, trailing=model.trailing, shared=model.shared)


def _rewrite_subgraph(
    subgraph: Table, converted: dict[int, int], sparse: set[int], dequantize_code: int, empty_buffer: int
) -> Table:
    tensors = list(subgraph.tables("tensors"))
    for t, buffer in converted.items():
        tensors[t] = Table("Tensor", {**tensors[t].fields, "type": FLOAT16, "buffer": buffer})

    def new_tensor(like: Table, tensor_type: int, suffix: bytes) -> int:
        """A tensor shaped like ``like``, without data, named after it."""
        source = like.fields
        fields = {"type": tensor_type, "buffer": empty_buffer, "name": source.get("name", b"") + suffix}
        for name in ("shape", "shape_signature", "has_rank"):
            if name in source:
                fields[name] = source[name]
        tensors.append(Table("Tensor", fields))
        return len(tensors) - 1

    def dequantize(source: int, output: int) -> Table:
        return Table("Operator", {"opcode_index": dequantize_code, "inputs": (source,), "outputs": (output,)})

    originals = subgraph.tables("operators")
    inputs_of = [op.ints("inputs") for op in originals]
    dequantized: dict[int, int] = {}  # converted tensor -> its DEQUANTIZE output
    operators: list[Table] = []
    # The DEQUANTIZE ops of the constants, first, in the order the operators first read them.
    for inputs in inputs_of:
        for i in inputs:
            if i in converted and i not in dequantized and i not in sparse:
                dequantized[i] = new_tensor(tensors[i], FLOAT32, DEQUANTIZED_SUFFIX)
                operators.append(dequantize(i, dequantized[i]))
    for op, inputs in zip(originals, inputs_of):
        if sparse and any(i in sparse for i in inputs):
            # sparse float16 -> DENSIFY -> new float16 tensor -> DEQUANTIZE -> the original output
            (output,) = op.ints("outputs")
            dense_half = new_tensor(tensors[output], FLOAT16, DENSIFIED_SUFFIX)
            operators.append(op.replace(outputs=(dense_half,)))
            operators.append(dequantize(dense_half, output))
            continue
        if not any(i in dequantized for i in inputs):
            operators.append(op)
            continue
        operators.append(Table("Operator", {**op.fields, "inputs": tuple(dequantized.get(i, i) for i in inputs)}))
    return subgraph.replace(tensors=tuple(tensors), operators=tuple(operators))


def _raised_version(model: TFLiteModel, metadata: list[Table], version: str) -> np.ndarray:
    """The min_runtime_version entry's new bytes: ``version`` zero-padded to the old length, at least 16."""
    entry = next(e for e in metadata if e.get("name") == MIN_RUNTIME_VERSION_KEY)
    data = np.zeros(max(16, model.buffer_data(entry.get("buffer")).size), np.uint8)
    data[: len(version)] = np.frombuffer(version.encode("ascii"), np.uint8)
    return data
