"""Crafted model files for the hardening tests: objects referenced many times (a flatbuffer
may point at one table, vector or string from anywhere), written directly with the
flatbuffers ``Builder``, independently of tflite_fp16's writer."""

from __future__ import annotations

from collections.abc import Sequence

import flatbuffers
import numpy as np
from tflite_builder import _int_vector, _table_vector

ADD = 0


def _tensor(builder: flatbuffers.Builder, shape: int, buffer: int, name: int, tensor_type: int = 0) -> int:
    builder.StartObject(10)
    builder.PrependUOffsetTRelativeSlot(0, shape, 0)
    builder.PrependInt8Slot(1, tensor_type, 0)
    builder.PrependUint32Slot(2, buffer, 0)
    builder.PrependUOffsetTRelativeSlot(3, name, 0)
    return builder.EndObject()


def _operator(builder: flatbuffers.Builder, inputs: Sequence[int], outputs: Sequence[int]) -> int:
    ins, outs = _int_vector(builder, inputs), _int_vector(builder, outputs)
    builder.StartObject(14)
    builder.PrependUint32Slot(0, 0, 0)
    builder.PrependUOffsetTRelativeSlot(1, ins, 0)
    builder.PrependUOffsetTRelativeSlot(2, outs, 0)
    return builder.EndObject()


def _subgraph(
    builder: flatbuffers.Builder, tensors: int, operators: int, inputs: Sequence[int], outputs: Sequence[int]
) -> int:
    ins, outs = _int_vector(builder, inputs), _int_vector(builder, outputs)
    builder.StartObject(6)
    builder.PrependUOffsetTRelativeSlot(0, tensors, 0)
    builder.PrependUOffsetTRelativeSlot(1, ins, 0)
    builder.PrependUOffsetTRelativeSlot(2, outs, 0)
    builder.PrependUOffsetTRelativeSlot(3, operators, 0)
    return builder.EndObject()


def _model(builder: flatbuffers.Builder, subgraphs: int, buffers: int) -> bytes:
    builder.StartObject(0)
    code = builder.EndObject()  # OperatorCode: every field default (ADD, version 1)
    codes = _table_vector(builder, [code])
    builder.StartObject(8)
    builder.PrependUint32Slot(0, 3, 0)
    builder.PrependUOffsetTRelativeSlot(1, codes, 0)
    builder.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    builder.PrependUOffsetTRelativeSlot(4, buffers, 0)
    builder.Finish(builder.EndObject(), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _buffers(builder: flatbuffers.Builder, datas: Sequence[int | None]) -> int:
    tables = []
    for data in datas:
        builder.StartObject(3)
        if data is not None:
            builder.PrependUOffsetTRelativeSlot(0, data, 0)
        tables.append(builder.EndObject())
    return _table_vector(builder, tables)


def repeated_subgraph(subgraphs: int = 10_000, tensor_references: int = 10_000) -> bytes:
    """``Model.subgraphs`` repeats one subgraph ``subgraphs`` times; its tensor vector repeats
    one tensor ``tensor_references`` times: tiny file, 10**8 tables when expanded."""
    builder = flatbuffers.Builder(1 << 16)
    name = builder.CreateString("t")
    shape = _int_vector(builder, [1])
    tensor = _tensor(builder, shape, 0, name)
    tensors = _table_vector(builder, [tensor] * tensor_references)
    operators = _table_vector(builder, [])
    subgraph = _subgraph(builder, tensors, operators, [0], [0])
    everything = _table_vector(builder, [subgraph] * subgraphs)
    return _model(builder, everything, _buffers(builder, [None]))


def chain_sharing_one_data_vector(buffers: int, width: int, seed: int = 0) -> bytes:
    """A runnable chain y = x + c_1 + ... + c_n whose ``buffers`` constants are separate buffers
    that all point at ONE data vector of ``width`` float32 values (valid, and LiteRT runs it)."""
    builder = flatbuffers.Builder(1 << 20)
    values = (np.random.default_rng(seed).standard_normal(width) * 0.1).astype("<f4")
    data = builder.CreateByteVector(values.tobytes())
    shape = _int_vector(builder, [width])
    tensors = [_tensor(builder, shape, 0, builder.CreateString("x"))]
    for i in range(buffers):
        tensors.append(_tensor(builder, shape, i + 1, builder.CreateString(f"c{i}")))
    for i in range(buffers):
        tensors.append(_tensor(builder, shape, 0, builder.CreateString(f"y{i}")))
    operators = []
    for i in range(buffers):
        source = 0 if i == 0 else buffers + i
        operators.append(_operator(builder, [source, 1 + i], [buffers + 1 + i]))
    subgraph = _subgraph(
        builder, _table_vector(builder, tensors), _table_vector(builder, operators), [0], [2 * buffers]
    )
    return _model(builder, _table_vector(builder, [subgraph]), _buffers(builder, [None] + [data] * buffers))


def shared_shape(tensors: int = 200, dimensions: int = 1_000_000) -> bytes:
    """``tensors`` tensors share one shape vector of ``dimensions`` entries."""
    builder = flatbuffers.Builder(1 << 20)
    shape = _int_vector(builder, [1] * dimensions)
    name = builder.CreateString("t")
    items = [_tensor(builder, shape, 0, name) for _ in range(tensors)]
    subgraph = _subgraph(builder, _table_vector(builder, items), _table_vector(builder, []), [0], [0])
    return _model(builder, _table_vector(builder, [subgraph]), _buffers(builder, [None]))


def shared_name(tensors: int = 2_000, length: int = 1 << 20) -> bytes:
    """``tensors`` tensors share one name of ``length`` bytes."""
    builder = flatbuffers.Builder(1 << 20)
    name = builder.CreateString("n" * length)
    shape = _int_vector(builder, [1])
    items = [_tensor(builder, shape, 0, name) for _ in range(tensors)]
    subgraph = _subgraph(builder, _table_vector(builder, items), _table_vector(builder, []), [0], [0])
    return _model(builder, _table_vector(builder, [subgraph]), _buffers(builder, [None]))


def shared_subgraph_with_a_constant(copies: int = 3) -> bytes:
    """One subgraph (y = x + c, c a float32 constant) listed ``copies`` times in ``Model.subgraphs``."""
    builder = flatbuffers.Builder(1024)
    data = builder.CreateByteVector(np.array([0.5, -1.5, 2.0, 0.25], "<f4").tobytes())
    shape = _int_vector(builder, [4])
    tensors = [
        _tensor(builder, shape, 0, builder.CreateString("x")),
        _tensor(builder, shape, 1, builder.CreateString("c")),
        _tensor(builder, shape, 0, builder.CreateString("y")),
    ]
    operators = [_operator(builder, [0, 1], [2])]
    subgraph = _subgraph(builder, _table_vector(builder, tensors), _table_vector(builder, operators), [0], [2])
    return _model(builder, _table_vector(builder, [subgraph] * copies), _buffers(builder, [None, data]))
