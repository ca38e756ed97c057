"""Build small, valid ``.tflite`` files from compact descriptions.

Written directly with the flatbuffers ``Builder`` and the schema's slot
numbers, independently of tflite_fp16's own writer, so tests can feed the
rewriter inputs it did not produce itself, including what the rewriter must
handle but TensorFlow no longer writes (old-format operator codes, fields of a
newer schema, bytes after the flatbuffer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import flatbuffers
import numpy as np

FLOAT32, FLOAT16, INT32, UINT8, INT64, INT8 = 0, 1, 2, 3, 4, 9
ADD, CONV_2D, DEQUANTIZE, FULLY_CONNECTED, MUL, CUSTOM, GATHER, DENSIFY = 0, 3, 6, 9, 18, 32, 36, 124
FULLY_CONNECTED_OPTIONS = 8  # BuiltinOptions union member
ADD_OPTIONS = 11


@dataclass
class Tensor:
    shape: Sequence[int]
    type: int = FLOAT32
    buffer: int = 0
    name: str = ""
    is_variable: bool = False
    shape_signature: Sequence[int] | None = None
    quantization: tuple[Sequence[float], Sequence[int]] | None = None  # (scale, zero_point)
    sparse: bool = False  # a trivial all-dense SparsityParameters
    csr: tuple[Sequence[int], Sequence[int]] | None = None  # 2-D CSR: (row segments, column indices)
    extra_slot: tuple[int, int] | None = None  # (slot, int32 value) of a field no schema defines


@dataclass
class Operator:
    opcode: int
    inputs: Sequence[int]
    outputs: Sequence[int]
    fused_activation: int | None = None  # writes FullyConnectedOptions when set
    custom_options: bytes | None = None
    options_type: int = FULLY_CONNECTED_OPTIONS  # the union type written with fused_activation
    large_custom_options: tuple[int, int] | None = None  # (offset, size) of custom options after the flatbuffer
    options_fields: Sequence[tuple[int, int]] | None = None  # (slot, int32 value) of the options table, of options_type
    intermediates: Sequence[int] | None = None  # Operator.intermediates (as LSTM kernels name them)


@dataclass
class OperatorCode:
    op: int
    version: int = 1
    custom_code: str | None = None
    old_format: bool = False  # only deprecated_builtin_code, as before schema 3a


@dataclass
class Subgraph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: Sequence[int] = ()
    outputs: Sequence[int] = ()
    name: str = ""


@dataclass
class Signature:
    key: str
    subgraph: int
    inputs: Sequence[tuple[str, int]] = ()
    outputs: Sequence[tuple[str, int]] = ()


@dataclass
class Model:
    operator_codes: list[OperatorCode]
    subgraphs: list[Subgraph]
    buffers: list[bytes | None]  # None: a Buffer with no data
    metadata: Sequence[tuple[str, int]] = ()
    signatures: Sequence[Signature] = ()
    description: str = "tflite_builder"
    trailing: bytes = b""
    model_extra_slot: tuple[int, int] | None = None
    external_buffers: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> (Buffer.offset, Buffer.size)
    metadata_buffer: Sequence[int] = ()  # the deprecated Model.metadata_buffer list


def _int_vector(builder: flatbuffers.Builder, values: Sequence[int], dtype: str = "<i4") -> int:
    return builder.CreateNumpyVector(np.asarray(list(values), dtype=dtype))


def _table_vector(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _int32_vector_table(builder: flatbuffers.Builder, values: Sequence[int]) -> int:
    vector = _int_vector(builder, values)
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, vector, 0)
    return builder.EndObject()


def csr(matrix: np.ndarray) -> tuple[bytes, tuple[list[int], list[int]]]:
    """The non-zero values of a 2-D float32 matrix and its CSR (segments, indices)."""
    segments, indices, values = [0], [], []
    for row in matrix:
        for column, value in enumerate(row):
            if value != 0:
                indices.append(column)
                values.append(value)
        segments.append(len(indices))
    return float_bytes(values), (segments, indices)


def _tensor(builder: flatbuffers.Builder, tensor: Tensor) -> int:
    shape = _int_vector(builder, tensor.shape)
    signature = _int_vector(builder, tensor.shape_signature) if tensor.shape_signature is not None else None
    name = builder.CreateString(tensor.name)
    quantization = None
    if tensor.quantization is not None:
        scale = builder.CreateNumpyVector(np.asarray(tensor.quantization[0], "<f4"))
        zero_point = _int_vector(builder, tensor.quantization[1], "<i8")
        builder.StartObject(7)
        builder.PrependUOffsetTRelativeSlot(2, scale, 0)
        builder.PrependUOffsetTRelativeSlot(3, zero_point, 0)
        quantization = builder.EndObject()
    sparsity = None
    if tensor.csr is not None:
        segments, indices = (_int32_vector_table(builder, v) for v in tensor.csr)
        builder.StartObject(6)
        builder.PrependInt8Slot(0, 0, 0)  # DENSE rows
        builder.PrependInt32Slot(1, tensor.shape[0], 0)
        rows = builder.EndObject()
        builder.StartObject(6)
        builder.PrependInt8Slot(0, 1, 0)  # SPARSE_CSR columns
        builder.PrependUint8Slot(2, 1, 0)  # array_segments: Int32Vector
        builder.PrependUOffsetTRelativeSlot(3, segments, 0)
        builder.PrependUint8Slot(4, 1, 0)  # array_indices: Int32Vector
        builder.PrependUOffsetTRelativeSlot(5, indices, 0)
        columns = builder.EndObject()
        order = _int_vector(builder, [0, 1])
        dim_metadata = _table_vector(builder, [rows, columns])
        builder.StartObject(3)
        builder.PrependUOffsetTRelativeSlot(0, order, 0)
        builder.PrependUOffsetTRelativeSlot(2, dim_metadata, 0)
        sparsity = builder.EndObject()
    if tensor.sparse:
        dims = []
        for size in tensor.shape:
            builder.StartObject(6)
            builder.PrependInt8Slot(0, 0, 0)  # DENSE
            builder.PrependInt32Slot(1, size, 0)
            dims.append(builder.EndObject())
        order = _int_vector(builder, range(len(tensor.shape)))
        dim_metadata = _table_vector(builder, dims)
        builder.StartObject(3)
        builder.PrependUOffsetTRelativeSlot(0, order, 0)
        builder.PrependUOffsetTRelativeSlot(2, dim_metadata, 0)
        sparsity = builder.EndObject()
    builder.StartObject(max(10, tensor.extra_slot[0] + 1) if tensor.extra_slot else 10)
    builder.PrependUOffsetTRelativeSlot(0, shape, 0)
    builder.PrependInt8Slot(1, tensor.type, 0)
    builder.PrependUint32Slot(2, tensor.buffer, 0)
    builder.PrependUOffsetTRelativeSlot(3, name, 0)
    if quantization is not None:
        builder.PrependUOffsetTRelativeSlot(4, quantization, 0)
    builder.PrependBoolSlot(5, tensor.is_variable, False)
    if sparsity is not None:
        builder.PrependUOffsetTRelativeSlot(6, sparsity, 0)
    if signature is not None:
        builder.PrependUOffsetTRelativeSlot(7, signature, 0)
    if tensor.extra_slot:
        builder.PrependInt32Slot(tensor.extra_slot[0], tensor.extra_slot[1], 0)
    return builder.EndObject()


def _operator(builder: flatbuffers.Builder, op: Operator) -> int:
    inputs = _int_vector(builder, op.inputs)
    outputs = _int_vector(builder, op.outputs)
    options = None
    if op.options_fields is not None:
        builder.StartObject(max((slot for slot, _ in op.options_fields), default=-1) + 1)
        for slot, value in op.options_fields:
            builder.PrependInt32Slot(slot, value, -1)
        options = builder.EndObject()
    elif op.fused_activation is not None:
        builder.StartObject(5)
        builder.PrependInt8Slot(0, op.fused_activation, 0)
        builder.PrependBoolSlot(2, True, False)  # keep_num_dims
        options = builder.EndObject()
    custom = builder.CreateByteVector(op.custom_options) if op.custom_options is not None else None
    intermediates = _int_vector(builder, op.intermediates) if op.intermediates is not None else None
    builder.StartObject(14)
    builder.PrependUint32Slot(0, op.opcode, 0)
    builder.PrependUOffsetTRelativeSlot(1, inputs, 0)
    builder.PrependUOffsetTRelativeSlot(2, outputs, 0)
    if options is not None:
        builder.PrependUint8Slot(3, op.options_type, 0)
        builder.PrependUOffsetTRelativeSlot(4, options, 0)
    if custom is not None:
        builder.PrependUOffsetTRelativeSlot(5, custom, 0)
    if intermediates is not None:
        builder.PrependUOffsetTRelativeSlot(8, intermediates, 0)
    if op.large_custom_options is not None:
        builder.PrependUint64Slot(9, op.large_custom_options[0], 0)
        builder.PrependUint64Slot(10, op.large_custom_options[1], 0)
    return builder.EndObject()


def _operator_code(builder: flatbuffers.Builder, code: OperatorCode) -> int:
    custom = builder.CreateString(code.custom_code) if code.custom_code is not None else None
    builder.StartObject(3 if code.old_format else 4)
    builder.PrependInt8Slot(0, min(code.op, 127), 0)
    if custom is not None:
        builder.PrependUOffsetTRelativeSlot(1, custom, 0)
    builder.PrependInt32Slot(2, code.version, 1)
    if not code.old_format:
        builder.PrependInt32Slot(3, code.op, 0)
    return builder.EndObject()


def build(model: Model) -> bytes:
    """The ``.tflite`` bytes of ``model`` (buffer data inside the flatbuffer, as TensorFlow writes it)."""
    builder = flatbuffers.Builder(1024)
    buffer_offsets = []
    for index, data in enumerate(model.buffers):
        vector = builder.CreateByteVector(data) if data is not None else None
        builder.StartObject(3)
        if vector is not None:
            builder.PrependUOffsetTRelativeSlot(0, vector, 0)
        if index in model.external_buffers:
            builder.PrependUint64Slot(1, model.external_buffers[index][0], 0)
            builder.PrependUint64Slot(2, model.external_buffers[index][1], 0)
        buffer_offsets.append(builder.EndObject())
    buffers = _table_vector(builder, buffer_offsets)
    subgraph_offsets = []
    for subgraph in model.subgraphs:
        tensors = _table_vector(builder, [_tensor(builder, t) for t in subgraph.tensors])
        operators = _table_vector(builder, [_operator(builder, op) for op in subgraph.operators])
        inputs = _int_vector(builder, subgraph.inputs)
        outputs = _int_vector(builder, subgraph.outputs)
        name = builder.CreateString(subgraph.name)
        builder.StartObject(6)
        builder.PrependUOffsetTRelativeSlot(0, tensors, 0)
        builder.PrependUOffsetTRelativeSlot(1, inputs, 0)
        builder.PrependUOffsetTRelativeSlot(2, outputs, 0)
        builder.PrependUOffsetTRelativeSlot(3, operators, 0)
        builder.PrependUOffsetTRelativeSlot(4, name, 0)
        subgraph_offsets.append(builder.EndObject())
    subgraphs = _table_vector(builder, subgraph_offsets)
    codes = _table_vector(builder, [_operator_code(builder, c) for c in model.operator_codes])
    metadata_offsets = []
    for name, buffer in model.metadata:
        name_offset = builder.CreateString(name)
        builder.StartObject(2)
        builder.PrependUOffsetTRelativeSlot(0, name_offset, 0)
        builder.PrependUint32Slot(1, buffer, 0)
        metadata_offsets.append(builder.EndObject())
    metadata = _table_vector(builder, metadata_offsets) if model.metadata else None
    signature_offsets = []
    for signature in model.signatures:
        maps = []
        for entries in (signature.inputs, signature.outputs):
            items = []
            for name, index in entries:
                name_offset = builder.CreateString(name)
                builder.StartObject(2)
                builder.PrependUOffsetTRelativeSlot(0, name_offset, 0)
                builder.PrependUint32Slot(1, index, 0)
                items.append(builder.EndObject())
            maps.append(_table_vector(builder, items))
        key = builder.CreateString(signature.key)
        builder.StartObject(5)
        builder.PrependUOffsetTRelativeSlot(0, maps[0], 0)
        builder.PrependUOffsetTRelativeSlot(1, maps[1], 0)
        builder.PrependUOffsetTRelativeSlot(2, key, 0)
        builder.PrependUint32Slot(4, signature.subgraph, 0)
        signature_offsets.append(builder.EndObject())
    signatures = _table_vector(builder, signature_offsets) if model.signatures else None
    description = builder.CreateString(model.description)
    metadata_buffer = _int_vector(builder, model.metadata_buffer) if model.metadata_buffer else None
    builder.StartObject(max(8, model.model_extra_slot[0] + 1) if model.model_extra_slot else 8)
    builder.PrependUint32Slot(0, 3, 0)
    builder.PrependUOffsetTRelativeSlot(1, codes, 0)
    builder.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    builder.PrependUOffsetTRelativeSlot(3, description, 0)
    builder.PrependUOffsetTRelativeSlot(4, buffers, 0)
    if metadata_buffer is not None:
        builder.PrependUOffsetTRelativeSlot(5, metadata_buffer, 0)
    if metadata is not None:
        builder.PrependUOffsetTRelativeSlot(6, metadata, 0)
    if signatures is not None:
        builder.PrependUOffsetTRelativeSlot(7, signatures, 0)
    if model.model_extra_slot:
        builder.PrependInt32Slot(model.model_extra_slot[0], model.model_extra_slot[1], 0)
    builder.Finish(builder.EndObject(), file_identifier=b"TFL3")
    return bytes(builder.Output()) + model.trailing


def float_bytes(values: Sequence[float]) -> bytes:
    return np.asarray(values, "<f4").tobytes()


def version_bytes(version: str) -> bytes:
    """A min_runtime_version metadata buffer: the string zero-padded to 16 bytes."""
    return version.encode("ascii").ljust(16, b"\0")


def add_model(weights: Sequence[float] = (1.5, -2.0, 3.25, 0.5)) -> Model:
    """A runnable model: output = input + constant (4 floats), with min_runtime_version."""
    return Model(
        operator_codes=[OperatorCode(ADD)],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([4], name="x", buffer=1),
                    Tensor([4], name="w", buffer=2),
                    Tensor([4], name="y", buffer=3),
                ],
                operators=[Operator(0, [0, 1], [2])],
                inputs=[0],
                outputs=[2],
                name="main",
            )
        ],
        buffers=[None, None, float_bytes(weights), None, version_bytes("1.5.0")],
        metadata=[("min_runtime_version", 4)],
        signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 2)])],
    )


MINIMUM, MAXIMUM, LOG, SUB = 57, 55, 73, 41


def sparse_add_model() -> tuple[Model, bytes]:
    """``y = x + densify(w_sparse)``: a sparse (CSR) float32 constant read through DENSIFY, and its
    values' bytes."""
    dense = np.array([[1.5, 0, 0.25, 0], [0, 0, -2, 4]], np.float32)
    values, structure = csr(dense)
    model = Model(
        operator_codes=[OperatorCode(DENSIFY), OperatorCode(ADD)],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([2, 4], name="x"),
                    Tensor([2, 4], name="w_sparse", buffer=1, csr=structure),
                    Tensor([2, 4], name="w"),
                    Tensor([2, 4], name="y"),
                ],
                operators=[Operator(0, [1], [2]), Operator(1, [0, 2], [3])],
                inputs=[0],
                outputs=[3],
            )
        ],
        buffers=[None, values],
        signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 3)])],
    )
    return model, values


def frontend_model(width: int = 8, clamp: float = float("inf"), epsilon: float = 1e-10) -> Model:
    """A runnable audio-front-end-like model, as real wake-word and audio models have:
    ``y = log(max(min(x * gain, clamp), epsilon)) + bias``.

    The clamp (+inf) and the epsilon (1e-10) are constants float16 cannot hold:
    TensorFlow's rule turns them into 65504 and 0, which pins large signals and
    gives -inf on silence. ``gain`` (256, exact in float16) and ``bias``
    (ordinary values) convert harmlessly.
    """
    bias = np.linspace(-0.9, 0.7, width).astype("<f4")
    return Model(
        operator_codes=[
            OperatorCode(MUL),
            OperatorCode(MINIMUM),
            OperatorCode(MAXIMUM),
            OperatorCode(LOG),
            OperatorCode(ADD),
        ],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([1, width], name="audio"),
                    Tensor([1], name="frontend/gain", buffer=1),
                    Tensor([1, width], name="frontend/scaled"),
                    Tensor([1], name="frontend/clamp_max", buffer=2),
                    Tensor([1, width], name="frontend/clamped"),
                    Tensor([1], name="frontend/log_epsilon", buffer=3),
                    Tensor([1, width], name="frontend/floored"),
                    Tensor([1, width], name="frontend/log"),
                    Tensor([width], name="frontend/bias", buffer=4),
                    Tensor([1, width], name="features"),
                ],
                operators=[
                    Operator(0, [0, 1], [2]),
                    Operator(1, [2, 3], [4]),
                    Operator(2, [4, 5], [6]),
                    Operator(3, [6], [7]),
                    Operator(4, [7, 8], [9]),
                ],
                inputs=[0],
                outputs=[9],
                name="main",
            )
        ],
        buffers=[
            None,
            float_bytes([256.0]),
            float_bytes([clamp]),
            float_bytes([epsilon]),
            bias.tobytes(),
            version_bytes("1.14.0"),
        ],
        metadata=[("min_runtime_version", 5)],
        signatures=[Signature("serving_default", 0, [("audio", 0)], [("features", 9)])],
    )


def filterbank_model(width: int = 16, bands: int = 8, seed: int = 0, dense_layers: int = 1) -> Model:
    """A runnable model whose float16 rounding is amplified: ``d = x·Aᵀ − x·Bᵀ`` with
    ``A = B + 0.001·C`` (two nearly equal "filter banks"; their difference is the signal),
    then ``dense_layers`` ordinary dense layers ``h = h·Wᵀ + bias``. Rounding A and B to
    float16 moves each by ~2**-11 of itself, comparable to their difference: the outputs
    move by tens of percent, although each constant casts well on its own. The dense
    weights and biases are harmless."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((bands, width)).astype("<f4")
    a = (b + 0.001 * rng.standard_normal((bands, width))).astype("<f4")
    buffers: list[bytes | None] = [None, a.tobytes(), b.tobytes()]
    tensors = [
        Tensor([1, width], name="signal"),
        Tensor([bands, width], name="bank/a", buffer=1),
        Tensor([bands, width], name="bank/b", buffer=2),
        Tensor([1, bands], name="bank/pa"),
        Tensor([1, bands], name="bank/pb"),
        Tensor([1, bands], name="bank/difference"),
    ]
    operators = [Operator(0, [0, 1, -1], [3]), Operator(0, [0, 2, -1], [4]), Operator(1, [3, 4], [5])]
    current = 5
    for layer in range(dense_layers):
        w = (rng.standard_normal((bands, bands)) / np.sqrt(bands)).astype("<f4")
        bias = (0.01 * rng.standard_normal(bands)).astype("<f4")
        buffers += [w.tobytes(), bias.tobytes()]
        prefix = "dense" if dense_layers == 1 else f"dense{layer}"
        tensors += [
            Tensor([bands, bands], name=f"{prefix}/weights", buffer=len(buffers) - 2),
            Tensor([bands], name=f"{prefix}/bias", buffer=len(buffers) - 1),
            Tensor([1, bands], name="scores" if layer == dense_layers - 1 else f"{prefix}/output"),
        ]
        operators.append(Operator(0, [current, len(tensors) - 3, len(tensors) - 2], [len(tensors) - 1]))
        current = len(tensors) - 1
    return Model(
        operator_codes=[OperatorCode(FULLY_CONNECTED), OperatorCode(SUB)],
        subgraphs=[Subgraph(tensors=tensors, operators=operators, inputs=[0], outputs=[current], name="main")],
        buffers=buffers,
        signatures=[Signature("serving_default", 0, [("signal", 0)], [("scores", current)])],
    )


RANDOM_UNIFORM = 148


def random_model() -> Model:
    """y = x + c + RANDOM_UNIFORM(shape), seeds unset: every run gives other outputs."""
    return Model(
        operator_codes=[OperatorCode(RANDOM_UNIFORM), OperatorCode(ADD)],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([1, 4], name="x"),
                    Tensor([2], type=INT32, name="shape", buffer=1),
                    Tensor([1, 4], name="noise"),
                    Tensor([1, 4], name="c", buffer=2),
                    Tensor([1, 4], name="t"),
                    Tensor([1, 4], name="y"),
                ],
                operators=[Operator(0, [1], [2]), Operator(1, [0, 3], [4]), Operator(1, [4, 2], [5])],
                inputs=[0],
                outputs=[5],
            )
        ],
        buffers=[None, np.array([1, 4], "<i4").tobytes(), float_bytes([0.5, -0.5, 0.25, 2.0])],
        signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 5)])],
    )


# ---------------------------------------------------------------- LiteRT's newest schema
#
# Models of schema 3d and after (external buffers, INT2/UINT4/FLOAT8 tensors, blockwise and
# multi-axis quantization, STABLEHLO_CASE), which the ``tflite`` package cannot write: built
# with flatc's object API of ``ai_edge_litert.schema_py_generated``, the schema LiteRT writes.

INT4, BFLOAT16, INT2, UINT4, FLOAT8_E4M3FN, FLOAT8_E5M2 = 17, 18, 19, 20, 21, 22
BLOCKWISE_QUANTIZATION, MULTI_AXIS_QUANTIZATION = 2, 3  # QuantizationDetails members
STABLEHLO_CASE = 209
STABLEHLO_CASE_OPTIONS = 23  # BuiltinOptions2 member


def _litert_schema():  # type: ignore[no-untyped-def]
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def litert_tensor(shape: Sequence[int], type: int = FLOAT32, buffer: int = 0, name: str = "", **fields: object):  # type: ignore[no-untyped-def]
    """A TensorT; ``fields`` by the object API's names (``externalBuffer``, ``quantization``)."""
    tensor = _litert_schema().TensorT()
    tensor.shape, tensor.type, tensor.buffer, tensor.name = list(shape), type, buffer, name
    for key, value in fields.items():
        assert hasattr(tensor, key), key
        setattr(tensor, key, value)
    return tensor


def litert_operator(
    opcode: int, inputs: Sequence[int], outputs: Sequence[int], options2: object = None, options2_type: int = 0
):  # type: ignore[no-untyped-def]
    operator = _litert_schema().OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = opcode, list(inputs), list(outputs)
    if options2 is not None:
        operator.builtinOptions2Type, operator.builtinOptions2 = options2_type, options2
    return operator


def litert_code(op: int, version: int = 1):  # type: ignore[no-untyped-def]
    code = _litert_schema().OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = op, min(op, 127), version
    return code


def litert_buffer(data: bytes | None = None):  # type: ignore[no-untyped-def]
    buffer = _litert_schema().BufferT()
    if data is not None:
        buffer.data = np.frombuffer(data, np.uint8)
    return buffer


def litert_subgraph(tensors: list, operators: list, inputs: Sequence[int], outputs: Sequence[int], name: str = ""):  # type: ignore[no-untyped-def, type-arg]
    subgraph = _litert_schema().SubGraphT()
    subgraph.tensors, subgraph.operators, subgraph.inputs, subgraph.outputs, subgraph.name = (
        tensors,
        operators,
        list(inputs),
        list(outputs),
        name,
    )
    return subgraph


def litert_model(codes: list, subgraphs: list, buffers: list, **fields: object):  # type: ignore[no-untyped-def, type-arg]
    """A ModelT; ``fields`` by the object API's names (``externalBuffers``, ``signatureDefs``)."""
    model = _litert_schema().ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, subgraphs, buffers
    model.description = "tflite_builder (LiteRT schema)"
    for key, value in fields.items():
        assert hasattr(model, key), key
        setattr(model, key, value)
    return model


def build_litert(model: object) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")  # type: ignore[attr-defined]
    return bytes(builder.Output())


def blockwise(scales: int, zero_points: int = -1, block_size: int = 32, multi_axis: Sequence[int] | None = None):  # type: ignore[no-untyped-def]
    """QuantizationParametersT whose details name the tensor of the scales (and of the zero points)."""
    schema = _litert_schema()
    if multi_axis is None:
        details = schema.BlockwiseQuantizationT()
        kind = BLOCKWISE_QUANTIZATION
    else:
        details = schema.MultiAxisQuantizationT()
        details.quantizedDimensions = list(multi_axis)
        kind = MULTI_AXIS_QUANTIZATION
    details.scales, details.zeroPoints, details.blockSize = scales, zero_points, block_size
    quantization = schema.QuantizationParametersT()
    quantization.detailsType, quantization.details = kind, details
    return quantization


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Signed ``bits``-bit integers packed low bits first, 8 // bits to a byte (INT4, INT2)."""
    mask = (1 << bits) - 1
    flat = (values.reshape(-1).astype(np.int16) & mask).astype(np.uint8)
    per_byte = 8 // bits
    flat = np.concatenate([flat, np.zeros(-len(flat) % per_byte, np.uint8)]).reshape(-1, per_byte)
    return bytes(np.bitwise_or.reduce(flat << (np.arange(per_byte, dtype=np.uint8) * bits), axis=1).astype(np.uint8))


def blockwise_fc_model(
    weight_type: int = INT4,
    scale_type: int = FLOAT16,
    scales_also_read: bool = False,
    multi_axis: Sequence[int] | None = None,
    features: int = 64,
    units: int = 8,
    block: int = 32,
    seed: int = 0,
):  # type: ignore[no-untyped-def]
    """A runnable blockwise-quantized layer as ai-edge-quantizer writes one, then an ordinary one:
    ``h = FULLY_CONNECTED(x, W, bias)`` with W INT4 (or INT2) whose BlockwiseQuantization names the
    tensor of its per-block scales (float16: what LiteRT's kernels take); ``y = h * c``. With
    ``multi_axis`` the details are a MultiAxisQuantization over those dimensions instead. With
    ``scales_also_read`` (and float32 scales) an operator also reads the scales tensor (a second
    output ``scales * scales``), so a rule that converted it would turn the tensor the
    quantization names into float16."""
    rng = np.random.default_rng(seed)
    bits = 2 if weight_type == INT2 else 4
    q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(units, features)).astype(np.int8)
    scales = (rng.random((units, features // block)) * 0.1 + 0.01).astype("<f2" if scale_type == FLOAT16 else "<f4")
    bias = rng.standard_normal(units).astype("<f4")
    c = rng.standard_normal(units).astype("<f4")
    tensors = [
        litert_tensor([1, features], name="x"),
        litert_tensor(
            [units, features],
            type=weight_type,
            buffer=1,
            name="fc/weights",
            quantization=blockwise(2, -1, block, multi_axis),
        ),
        litert_tensor(list(scales.shape), type=scale_type, buffer=2, name="fc/scales"),
        litert_tensor([units], buffer=3, name="fc/bias"),
        litert_tensor([1, units], name="fc/output"),
        litert_tensor([units], buffer=4, name="scale/c"),
        litert_tensor([1, units], name="y"),
    ]
    operators = [litert_operator(0, [0, 1, 3], [4]), litert_operator(1, [4, 5], [6])]
    codes = [litert_code(FULLY_CONNECTED), litert_code(MUL)]
    outputs = [6]
    if scales_also_read:
        tensors.append(litert_tensor(list(scales.shape), name="scales_copy"))
        operators.append(litert_operator(1, [2, 2], [7]))  # scales * scales: an operator reads the tensor
        outputs.append(7)
    schema = _litert_schema()
    options = schema.FullyConnectedOptionsT()
    operators[0].builtinOptionsType, operators[0].builtinOptions = FULLY_CONNECTED_OPTIONS, options
    buffers = [
        litert_buffer(),
        litert_buffer(pack_bits(q, bits)),
        litert_buffer(scales.tobytes()),
        litert_buffer(bias.tobytes()),
        litert_buffer(c.tobytes()),
    ]
    return litert_model(codes, [litert_subgraph(tensors, operators, [0], outputs, "main")], buffers)


def external_buffer_model(external_type: int = FLOAT32):  # type: ignore[no-untyped-def]
    """``y = x + e; z = y * c``: ``e``'s data lives in an external file (``weights.bin``, external
    buffer id 7), ``c``'s in the model."""
    schema = _litert_schema()
    group = schema.ExternalBufferGroupT()
    group.name = "weights.bin"
    external = schema.ExternalBufferT()
    external.id, external.group, external.offset, external.length, external.packing = 7, 0, 64, 16, "raw"
    tensors = [
        litert_tensor([4], name="x"),
        litert_tensor([4], type=external_type, name="external/e", externalBuffer=7),
        litert_tensor([4], name="y"),
        litert_tensor([4], buffer=1, name="c"),
        litert_tensor([4], name="z"),
    ]
    operators = [litert_operator(0, [0, 1], [2]), litert_operator(1, [2, 3], [4])]
    return litert_model(
        [litert_code(ADD), litert_code(MUL)],
        [litert_subgraph(tensors, operators, [0], [4], "main")],
        [litert_buffer(), litert_buffer(float_bytes([0.5, 1.5, -2.0, 4.0]))],
        externalBufferGroups=[group],
        externalBuffers=[external],
    )


def case_model(branches: int = 2):  # type: ignore[no-untyped-def]
    """STABLEHLO_CASE (BuiltinOptions2 StablehloCaseOptions.branch_subgraph_indices) choosing among
    ``branches`` subgraphs, each ``y = x + c_i`` with its own float32 constant."""
    schema = _litert_schema()
    options = schema.StablehloCaseOptionsT()
    options.branchSubgraphIndices = list(range(1, branches + 1))
    main = litert_subgraph(
        [litert_tensor([], type=INT32, name="index"), litert_tensor([4], name="x"), litert_tensor([4], name="y")],
        [litert_operator(0, [0, 1], [2], options, STABLEHLO_CASE_OPTIONS)],
        [0, 1],
        [2],
        "main",
    )
    subgraphs = [main]
    buffers = [litert_buffer()]
    for branch in range(branches):
        buffers.append(litert_buffer(float_bytes([branch + 0.5] * 4)))
        subgraphs.append(
            litert_subgraph(
                [
                    litert_tensor([4], name="x"),
                    litert_tensor([4], buffer=len(buffers) - 1, name=f"branch{branch}/c"),
                    litert_tensor([4], name="y"),
                ],
                [litert_operator(1, [0, 1], [2])],
                [0],
                [2],
                f"branch{branch}",
            )
        )
    return litert_model([litert_code(STABLEHLO_CASE), litert_code(ADD)], subgraphs, buffers)


# ---------------------------------------------------------------- models for verification

LOGISTIC, CONV_2D_OPTIONS, RESHAPE = 14, 1, 22
VALID = 1


def sigmoid_map_model(width: int = 16, outputs: int = 64, gain: float = 200.0, seed: int = 0) -> Model:
    """A probability map whose float16 error is large but harmless, as a DB text detector's is:
    ``y = sigmoid(gain * (x·Aᵀ − x·Bᵀ))`` with ``A = B + 0.01·C`` (a steep binarization of a
    difference of two maps). Float16 moves its outputs by a relative L2 error of a few percent
    on N(0,1) inputs, far above 1e-2 but far from broken, and by nothing on zeros."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((outputs, width)).astype("<f4")
    a = (b + 0.01 * rng.standard_normal((outputs, width))).astype("<f4")
    return Model(
        operator_codes=[OperatorCode(FULLY_CONNECTED), OperatorCode(SUB), OperatorCode(MUL), OperatorCode(LOGISTIC)],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([1, width], name="image"),
                    Tensor([outputs, width], name="map/a", buffer=1),
                    Tensor([outputs, width], name="map/b", buffer=2),
                    Tensor([1, outputs], name="map/pa"),
                    Tensor([1, outputs], name="map/pb"),
                    Tensor([1, outputs], name="map/difference"),
                    Tensor([1], name="map/gain", buffer=3),
                    Tensor([1, outputs], name="map/logits"),
                    Tensor([1, outputs], name="probability"),
                ],
                operators=[
                    Operator(0, [0, 1, -1], [3]),
                    Operator(0, [0, 2, -1], [4]),
                    Operator(1, [3, 4], [5]),
                    Operator(2, [5, 6], [7]),
                    Operator(3, [7], [8]),
                ],
                inputs=[0],
                outputs=[8],
                name="main",
            )
        ],
        buffers=[None, a.tobytes(), b.tobytes(), float_bytes([gain])],
        signatures=[Signature("serving_default", 0, [("image", 0)], [("probability", 8)])],
    )


def conv_image_model(kernel: int = 3, channels: int = 4, seed: int = 0) -> Model:
    """A fully convolutional model of input ``1 x -1 x -1 x 3`` (any image size): one CONV_2D
    with a ``kernel x kernel`` VALID window, so LiteRT cannot prepare it for images smaller
    than the kernel (a 1 x 1 image, say)."""
    rng = np.random.default_rng(seed)
    weights = (0.2 * rng.standard_normal((channels, kernel, kernel, 3))).astype("<f4")
    bias = (0.1 * rng.standard_normal(channels)).astype("<f4")
    return Model(
        operator_codes=[OperatorCode(CONV_2D)],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([1, 1, 1, 3], name="image", shape_signature=[1, -1, -1, 3]),
                    Tensor([channels, kernel, kernel, 3], name="conv/weights", buffer=1),
                    Tensor([channels], name="conv/bias", buffer=2),
                    Tensor([1, 1, 1, channels], name="features", shape_signature=[1, -1, -1, channels]),
                ],
                operators=[
                    Operator(
                        0, [0, 1, 2], [3], options_type=CONV_2D_OPTIONS, options_fields=[(0, VALID), (1, 1), (2, 1)]
                    )
                ],
                inputs=[0],
                outputs=[3],
                name="main",
            )
        ],
        buffers=[None, weights.tobytes(), bias.tobytes()],
        signatures=[Signature("serving_default", 0, [("image", 0)], [("features", 3)])],
    )


def audio_window_model(window: int = 8, channels: int = 2, seed: int = 0) -> Model:
    """An audio front-end of input ``1 x -1`` (any number of samples): the samples reshaped to
    ``1 x 1 x N x 1`` and filtered by a CONV_2D of a ``window``-sample VALID window, so LiteRT
    cannot prepare it for fewer samples than the window (1 sample, say)."""
    rng = np.random.default_rng(seed)
    weights = (0.3 * rng.standard_normal((channels, 1, window, 1))).astype("<f4")
    bias = (0.1 * rng.standard_normal(channels)).astype("<f4")
    return Model(
        operator_codes=[OperatorCode(RESHAPE), OperatorCode(CONV_2D)],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([1, 1], name="audio", shape_signature=[1, -1]),
                    Tensor([4], type=INT32, name="frames/shape", buffer=1),
                    Tensor([1, 1, 1, 1], name="frames", shape_signature=[1, 1, -1, 1]),
                    Tensor([channels, 1, window, 1], name="filter/weights", buffer=2),
                    Tensor([channels], name="filter/bias", buffer=3),
                    Tensor([1, 1, 1, channels], name="filtered", shape_signature=[1, 1, -1, channels]),
                ],
                operators=[
                    Operator(0, [0, 1], [2]),
                    Operator(
                        1, [2, 3, 4], [5], options_type=CONV_2D_OPTIONS, options_fields=[(0, VALID), (1, 1), (2, 1)]
                    ),
                ],
                inputs=[0],
                outputs=[5],
                name="main",
            )
        ],
        buffers=[None, np.array([1, 1, -1, 1], "<i4").tobytes(), weights.tobytes(), bias.tobytes()],
        signatures=[Signature("serving_default", 0, [("audio", 0)], [("filtered", 5)])],
    )


SPLIT, SPLIT_OPTIONS = 49, 35


def split_by_zero_model() -> Model:
    """``y = SPLIT(x + c)`` into 0 parts: a model LiteRT's verifier accepts and whose SPLIT
    crashes LiteRT when the interpreter is prepared (it divides by the number of parts)."""
    return Model(
        operator_codes=[OperatorCode(ADD), OperatorCode(SPLIT)],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([1, 4], name="x"),
                    Tensor([1, 4], name="c", buffer=1),
                    Tensor([1, 4], name="s"),
                    Tensor([], type=INT32, name="axis", buffer=2),
                    Tensor([1, 4], name="y"),
                ],
                operators=[
                    Operator(0, [0, 1], [2]),
                    Operator(1, [3, 2], [4], options_type=SPLIT_OPTIONS, options_fields=[(0, 0)]),
                ],
                inputs=[0],
                outputs=[4],
                name="main",
            )
        ],
        buffers=[None, float_bytes([0.5, 1.5, -2.0, 3.0]), np.array([1], "<i4").tobytes()],
        signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 4)])],
    )


def sensitive_dense_model(width: int = 16, seed: int = 0) -> Model:
    """``y = (x·Wᵀ + b) * k``, where on the calibration input ``x = 1`` the bias nearly cancels
    the product (``b = -W·1 + 0.001·r``): the dense layer's own output is where float16's
    rounding of W and b turns into a large error; k (harmless) follows."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((width, width)).astype("<f4")
    b = (-w.astype(np.float64).sum(axis=1) + 0.001 * rng.standard_normal(width)).astype("<f4")
    return Model(
        operator_codes=[OperatorCode(FULLY_CONNECTED), OperatorCode(MUL)],
        subgraphs=[
            Subgraph(
                tensors=[
                    Tensor([1, width], name="x"),
                    Tensor([width, width], name="dense/weights", buffer=1),
                    Tensor([width], name="dense/bias", buffer=2),
                    Tensor([1, width], name="dense/output"),
                    Tensor([1], name="scale/k", buffer=3),
                    Tensor([1, width], name="y"),
                ],
                operators=[Operator(0, [0, 1, 2], [3]), Operator(1, [3, 4], [5])],
                inputs=[0],
                outputs=[5],
                name="main",
            )
        ],
        buffers=[None, w.tobytes(), b.tobytes(), float_bytes([2.0])],
        signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 5)])],
    )


def chain_then_filterbank_model(dense_layers: int, width: int = 16, bands: int = 8, seed: int = 0) -> Model:
    """``dense_layers`` dense layers (permutations plus small biases: harmless in float16), then the two nearly equal
    filter banks of :func:`filterbank_model` and their difference as the output: however many
    constants the model has, two of them (``bank/a``, ``bank/b``) are where float16 hurts, next
    to the output."""
    rng = np.random.default_rng(seed)
    buffers: list[bytes | None] = [None]
    tensors = [Tensor([1, width], name="signal")]
    operators = []
    current = 0
    for layer in range(dense_layers):
        # A permutation: the signal neither grows nor fades, and float16 holds it exactly.
        permutation = np.eye(width, dtype="<f4")[rng.permutation(width)]
        buffers += [permutation.tobytes(), (0.01 * rng.standard_normal(width)).astype("<f4").tobytes()]
        tensors += [
            Tensor([width, width], name=f"dense{layer}/weights", buffer=len(buffers) - 2),
            Tensor([width], name=f"dense{layer}/bias", buffer=len(buffers) - 1),
            Tensor([1, width], name=f"dense{layer}/output"),
        ]
        operators.append(Operator(0, [current, len(tensors) - 3, len(tensors) - 2], [len(tensors) - 1]))
        current = len(tensors) - 1
    b = rng.standard_normal((bands, width)).astype("<f4")
    a = (b + 0.001 * rng.standard_normal((bands, width))).astype("<f4")
    buffers += [a.tobytes(), b.tobytes()]
    tensors += [
        Tensor([bands, width], name="bank/a", buffer=len(buffers) - 2),
        Tensor([bands, width], name="bank/b", buffer=len(buffers) - 1),
        Tensor([1, bands], name="bank/pa"),
        Tensor([1, bands], name="bank/pb"),
        Tensor([1, bands], name="scores"),
    ]
    n = len(tensors)
    operators += [
        Operator(0, [current, n - 5, -1], [n - 3]),
        Operator(0, [current, n - 4, -1], [n - 2]),
        Operator(1, [n - 3, n - 2], [n - 1]),
    ]
    return Model(
        operator_codes=[OperatorCode(FULLY_CONNECTED), OperatorCode(SUB)],
        subgraphs=[Subgraph(tensors=tensors, operators=operators, inputs=[0], outputs=[n - 1], name="main")],
        buffers=buffers,
        signatures=[Signature("serving_default", 0, [("signal", 0)], [("scores", n - 1)])],
    )
