"""Check a rewrite against its input, reading both with flatc's generated Python code of
LiteRT's newest schema (``ai_edge_litert.schema_py_generated``, the same API as the ``tflite``
package, plus schema 3d's fields).

This is the test suite's independent account of the rules: it does not use
tflite_fp16's reader, plan, writer or metadata code, so a bug there cannot hide itself.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tflite

FLOAT32, FLOAT16, DEQUANTIZE, DENSIFY, CUSTOM = 0, 1, 6, 124, 32
QUANTIZED_WEIGHTS = {3, 9, 17, 19, 20}  # UINT8, INT8, INT4, INT2, UINT4
BLOCKWISE, MULTI_AXIS = 2, 3  # QuantizationDetails members that name tensors by index


def dump(obj: Any, depth: int = 0) -> Any:
    """Every field of a generated tflite table object, recursively, as plain data."""
    if obj is None or isinstance(obj, (int, float, bool, bytes, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    out: dict[str, Any] = {}
    names = [n for n in dir(obj) if n[0].isupper() and not n.startswith(("GetRootAs", "Init"))]
    for name in names:
        if name.endswith("BufferHasIdentifier") or any(
            name.endswith(suffix) and name[: -len(suffix)] in names for suffix in ("Length", "IsNone", "AsNumpy")
        ):
            continue  # flatc's helpers, not fields (ExternalBuffer.Length is a field)
        method = getattr(obj, name)
        if name + "Length" in names:
            if getattr(obj, name + "IsNone")():
                out[name] = None
            elif name + "AsNumpy" in names:
                out[name] = getattr(obj, name + "AsNumpy")().tolist()
            else:
                out[name] = [dump(method(j), depth + 1) for j in range(getattr(obj, name + "Length")())]
        else:
            try:
                value = method()
            except TypeError:
                continue
            if type(value).__name__ == "Table":  # a union: decode by its type field
                kind = getattr(obj, name + "Type")()
                cls = _union_class(type(obj).__name__, name, kind)
                member = cls()
                member.Init(value.Bytes, value.Pos)
                value = member
            out[name] = dump(value, depth + 1)
    return out


def _union_class(table: str, field: str, kind: int) -> Any:
    enum = {
        "BuiltinOptions": tflite.BuiltinOptions,
        "BuiltinOptions2": tflite.BuiltinOptions2,
        "Details": tflite.QuantizationDetails,
    }.get(field)
    if enum is None:
        enum = tflite.SparseIndexVector
    name = {v: k for k, v in vars(enum).items() if isinstance(v, int)}[kind]
    return getattr(tflite, name)


def raw_builtin_code(code: Any) -> int:
    """OperatorCode.builtin_code as stored (the package's BuiltinCode() substitutes
    deprecated_builtin_code for values below 127, so it cannot see the field)."""
    o = code._tab.Offset(10)
    return 0 if o == 0 else code._tab.Get(flatbuffers.number_types.Int32Flags, o + code._tab.Pos)


def op_of(code: Any) -> int:
    return max(raw_builtin_code(code), code.DeprecatedBuiltinCode())


def buffer_data(model: Any, index: int) -> bytes:
    """A buffer's data, inside the flatbuffer or after it (Buffer.offset/size, the offset layout)."""
    buffer = model.Buffers(index)
    if buffer.Offset() > 1:
        return bytes(model._tab.Bytes[buffer.Offset() : buffer.Offset() + buffer.Size()])
    return b"" if buffer.DataIsNone() else buffer.DataAsNumpy().tobytes()


def buffer_data_offset(model: Any, index: int) -> int | None:
    """Where a buffer's data starts in the file."""
    buffer = model.Buffers(index)
    if buffer.Offset() > 1:
        return buffer.Offset()
    o = buffer._tab.Offset(4)
    return None if o == 0 else buffer._tab.Vector(o)


def is_lossy(data: bytes, max_cast_error: float = 1e-3) -> bool:
    """float16 cannot hold these float32 values faithfully: a value beyond +-65504 (NaN aside), or a
    relative L2 cast error (over finite values, in float64) above ``max_cast_error``."""
    x = np.frombuffer(data, "<f4").astype(np.float64)
    if (np.abs(x[~np.isnan(x)]) > 65504).any():
        return True
    finite = x[np.isfinite(x)]
    error = np.clip(finite, -65504, 65504).astype("<f2").astype(np.float64) - finite
    norm = float(np.sqrt((finite**2).sum()))
    if norm == 0:
        return bool(error.any())
    return float(np.sqrt((error**2).sum())) / norm > max_cast_error


def name_matches(name: str, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(part, pattern) for part in [name] + name.split(";"))


def expected_conversions(
    model: Any,
    keep: Sequence[str] = (),
    min_elements: int = 0,
    custom_op_inputs: bool = False,
    skip_ops: Sequence[str] = (),
    lossy: str = "keep",
    max_cast_error: float = 1e-3,
) -> set[tuple[int, int]]:
    """(subgraph, tensor) pairs the rule converts, computed from the input alone."""
    ops = [op_of(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    builtin_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if isinstance(v, int)}
    skipped_builtins = {n for n in skip_ops if not n.startswith("CUSTOM:")}
    skipped_customs = {n[len("CUSTOM:") :] for n in skip_ops if n.startswith("CUSTOM:")}
    result = set()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        tensors = [sg.Tensors(i) for i in range(sg.TensorsLength())]
        readers: dict[int, list[int]] = {}
        written = set()
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            for i in set(op.InputsAsNumpy().tolist() if not op.InputsIsNone() else []):
                readers.setdefault(i, []).append(o)
            written.update(op.OutputsAsNumpy().tolist() if not op.OutputsIsNone() else [])
        boundary = set(sg.InputsAsNumpy().tolist() if not sg.InputsIsNone() else []) | set(
            sg.OutputsAsNumpy().tolist() if not sg.OutputsIsNone() else []
        )

        def hybrid(o: int, sg: Any = sg, tensors: Any = tensors) -> bool:
            op = sg.Operators(o)
            if ops[op.OpcodeIndex()] == DEQUANTIZE:
                return False
            ins = [i for i in op.InputsAsNumpy().tolist() if i >= 0]
            outs = [i for i in op.OutputsAsNumpy().tolist() if i >= 0]
            return any(
                tensors[i].Type() in QUANTIZED_WEIGHTS and buffer_data(model, tensors[i].Buffer()) for i in ins
            ) and any(tensors[i].Type() == FLOAT32 for i in outs)

        named = set()  # tensors a blockwise or multi-axis quantization names (scales, zero points)
        for tensor in tensors:
            q = tensor.Quantization()
            if q is not None and q.DetailsType() in (BLOCKWISE, MULTI_AXIS):
                details = (
                    tflite.BlockwiseQuantization if q.DetailsType() == BLOCKWISE else tflite.MultiAxisQuantization
                )()
                details.Init(q.Details().Bytes, q.Details().Pos)
                named |= {details.Scales(), details.ZeroPoints()}
        for t, tensor in enumerate(tensors):
            if tensor.Type() != FLOAT32 or not buffer_data(model, tensor.Buffer()) or tensor.ExternalBuffer():
                continue
            if t in boundary or tensor.IsVariable() or t in written or t not in readers or t in named:
                continue
            name = (tensor.Name() or b"").decode("utf-8", "replace")
            if any(name_matches(name, pattern) for pattern in keep):
                continue
            if lossy == "keep" and is_lossy(buffer_data(model, tensor.Buffer()), max_cast_error):
                continue
            if (
                tensor.Sparsity() is None
                and int(np.prod(tensor.ShapeAsNumpy() if not tensor.ShapeIsNone() else [])) < min_elements
            ):
                continue
            bad = False
            for o in readers[t]:
                code = ops[sg.Operators(o).OpcodeIndex()]
                if code == CUSTOM:
                    custom = (model.OperatorCodes(sg.Operators(o).OpcodeIndex()).CustomCode() or b"").decode(
                        "utf-8", "replace"
                    )
                    if custom in skipped_customs:
                        bad = True
                elif builtin_names.get(code) in skipped_builtins:
                    bad = True
                if (
                    (code == CUSTOM and not custom_op_inputs)
                    or hybrid(o)
                    or (tensor.Sparsity() is not None and code != DENSIFY)
                ):
                    bad = True
            if not bad:
                result.add((s, t))
    return result


def check_rewrite(before: bytes, after: bytes, fp16_compute: bool = False, **options: Any) -> set[tuple[int, int]]:
    """Assert every rule of the rewrite (under ``options``, as :func:`expected_conversions`
    takes them); return the converted (subgraph, tensor) pairs."""
    a = tflite.Model.GetRootAs(before, 0)
    b = tflite.Model.GetRootAs(after, 0)
    converted = expected_conversions(a, **options)
    if not converted:
        assert bytes(after) == bytes(before), "nothing converts, yet the output differs from the input"
        return converted
    assert b.Version() == a.Version()
    assert b.Description() == a.Description()
    assert dump(a)["MetadataBuffer"] == dump(b)["MetadataBuffer"]
    assert b.SubgraphsLength() == a.SubgraphsLength()
    assert [dump(a.SignatureDefs(i)) for i in range(a.SignatureDefsLength())] == [
        dump(b.SignatureDefs(i)) for i in range(b.SignatureDefsLength())
    ]

    b_ops = [op_of(b.OperatorCodes(i)) for i in range(b.OperatorCodesLength())]
    added_codes: set[int] = set()
    for s in range(a.SubgraphsLength()):
        added_codes |= _check_subgraph(a, b, s, {t for (sg, t) in converted if sg == s}, b_ops)

    # Operator codes: the originals keep op, custom code and version, except the
    # DEQUANTIZE the new ops use: builtin_code = deprecated_builtin_code = 6, version >= 3.
    assert b.OperatorCodesLength() - a.OperatorCodesLength() in (0, 1)
    assert len(added_codes) <= 1
    for i in range(b.OperatorCodesLength()):
        cb = b.OperatorCodes(i)
        if i in added_codes:
            assert raw_builtin_code(cb) == cb.DeprecatedBuiltinCode() == DEQUANTIZE
            assert cb.Version() >= 3
        if i < a.OperatorCodesLength():
            ca = a.OperatorCodes(i)
            assert op_of(ca) == op_of(cb) and ca.CustomCode() == cb.CustomCode()
            assert cb.Version() == (max(ca.Version(), 3) if i in added_codes else ca.Version())
        else:
            assert i in added_codes, "an operator code was added but is not used"

    # Metadata: the same entries with the same bytes, except that min_runtime_version is raised to
    # >= 1.15.0, reduced_precision_support says float16 (added before CONVERSION_METADATA when
    # absent) and CONVERSION_METADATA records PTQ_FLOAT16 and the output's hash.
    names_a = [a.Metadata(m).Name() for m in range(a.MetadataLength())]
    names_b = [b.Metadata(m).Name() for m in range(b.MetadataLength())]
    expected_names = list(names_a)
    if REDUCED_PRECISION not in expected_names:
        at = expected_names.index(CONVERSION_METADATA) if CONVERSION_METADATA in expected_names else len(expected_names)
        expected_names.insert(at, REDUCED_PRECISION)
    assert names_b == expected_names, (names_a, names_b)
    for m, name in enumerate(names_b):
        db = buffer_data(b, b.Metadata(m).Buffer())
        if name == REDUCED_PRECISION:
            assert db == (b"fp16accfp16" if fp16_compute else b"fp16accfp32"), db
            continue
        da = buffer_data(a, a.Metadata(names_a.index(name)).Buffer())
        if name == b"min_runtime_version":
            old = _version(da)
            new = _version(db)
            assert new >= old and new >= (1, 15, 0), (old, new)
            assert len(db) >= 16 and (new == old or db.rstrip(b"\0") == b"1.15.0")
        elif name == CONVERSION_METADATA:
            check_conversion_metadata(da, db, after)
        else:
            assert da == db, name

    # Alignment: every non-empty buffer's data starts 16-byte aligned.
    for i in range(b.BuffersLength()):
        offset = buffer_data_offset(b, i)
        if offset is not None and buffer_data(b, i):
            assert offset % 16 == 0, (i, offset)
    return converted


REDUCED_PRECISION = b"reduced_precision_support"
CONVERSION_METADATA = b"CONVERSION_METADATA"
PTQ_FLOAT16 = 1001
_MASK = (1 << 64) - 1


def tensorflow_model_hash(content: bytes) -> int:
    """TensorFlow's ``util.get_model_hash`` of a model file: written after its source
    (tflite/python/util.py), with NumPy's uint64 arithmetic, on the file read through the
    generated object API as TensorFlow reads it."""
    model = tflite.ModelT.InitFromPackedBuf(bytearray(content), 0)
    constant = np.uint64(0x9E3779B97F4A7800)

    def update(value: np.uint64, item: Any) -> np.uint64:
        with np.errstate(over="ignore"):
            item = np.int64(item).astype(np.uint64)  # a negative int32 wraps, as np.uint64(np.int32(-1)) does
            return np.bitwise_xor(
                value, item + constant + np.left_shift(value, np.uint64(10)) + np.right_shift(value, np.uint64(4))
            )

    value = np.uint64(0)
    for subgraph in model.subgraphs or []:
        if subgraph.operators is not None:
            value = update(value, len(subgraph.operators))
            for operator in subgraph.operators:
                for items in (operator.inputs, operator.outputs):
                    for item in items if items is not None else []:
                        value = update(value, item)
        if subgraph.tensors is not None:
            value = update(value, len(subgraph.tensors))
            for tensor in subgraph.tensors:
                data = model.buffers[tensor.buffer].data
                if data is not None:
                    value = update(value, len(data))
                for item in tensor.shape if tensor.shape is not None else []:
                    value = update(value, item)
        for items in (subgraph.inputs, subgraph.outputs):
            if items is not None:
                value = update(value, len(items))
    return int(value)


def read_conversion_metadata(raw: bytes) -> dict[str, Any]:
    """The fields of a CONVERSION_METADATA flatbuffer (conversion_metadata.fbs), decoded with the
    flatbuffers runtime alone, by vtable slot."""
    root = flatbuffers.table.Table(
        bytearray(raw), flatbuffers.encode.Get(flatbuffers.packer.uoffset, bytearray(raw), 0)
    )

    def sub(table: Any, slot: int) -> Any:
        o = table.Offset(4 + 2 * slot)
        return None if o == 0 else flatbuffers.table.Table(table.Bytes, table.Indirect(o + table.Pos))

    def scalar(table: Any, slot: int, flags: Any) -> Any:
        o = table.Offset(4 + 2 * slot)
        return None if o == 0 else table.Get(flags, o + table.Pos)

    n = flatbuffers.number_types
    out: dict[str, Any] = {}
    environment = sub(root, 0)
    if environment is not None:
        o = environment.Offset(4)
        out["tensorflow_version"] = None if o == 0 else environment.String(o + environment.Pos)
        out["api_version"] = scalar(environment, 1, n.Uint32Flags)
        out["model_type"] = scalar(environment, 2, n.Int32Flags)
        out["model_hash"] = scalar(environment, 3, n.Uint64Flags)
    options = sub(root, 1)
    if options is not None:
        o = options.Offset(4)
        out["modes"] = None if o == 0 else options.GetVectorAsNumpy(n.Int32Flags, o).tolist()
        for slot, name in ((1, "allow_custom_ops"), (2, "enable_select_tf_ops"), (3, "force_select_tf_ops")):
            out[name] = scalar(options, slot, n.BoolFlags)
        o = options.Offset(12)
        blocks = []
        if o:
            vector = options.Vector(o)
            for j in range(options.VectorLen(o)):
                block = flatbuffers.table.Table(options.Bytes, options.Indirect(vector + 4 * j))
                ob = block.Offset(4)
                blocks.append(None if ob == 0 else block.GetVectorAsNumpy(n.Uint32Flags, ob).tolist())
        out["sparsity_block_sizes"] = blocks if o else None
    return out


def check_conversion_metadata(before: bytes, after: bytes, model_after: bytes) -> None:
    """CONVERSION_METADATA after a float16 rewrite: every field kept, PTQ_FLOAT16 among the modes
    once, and the hash TensorFlow's function gives for the output file."""
    a, b = read_conversion_metadata(before), read_conversion_metadata(after)
    modes = list(a.get("modes") or [])
    assert b.pop("modes") == (modes if PTQ_FLOAT16 in modes else modes + [PTQ_FLOAT16])
    a.pop("modes", None)
    assert b.pop("model_hash") == tensorflow_model_hash(model_after)
    a.pop("model_hash", None)
    assert a == b


def _version(raw: bytes) -> tuple[int, ...]:
    return tuple(int(p) for p in raw.split(b"\0", 1)[0].decode().split("."))


def _check_subgraph(a: Any, b: Any, s: int, converted: set[int], b_ops: list[int]) -> set[int]:
    """Check one subgraph; return the operator codes of the added DEQUANTIZE ops."""
    sa, sb = a.Subgraphs(s), b.Subgraphs(s)
    assert sa.Name() == sb.Name()
    assert sa.InputsAsNumpy().tolist() == sb.InputsAsNumpy().tolist()
    assert sa.OutputsAsNumpy().tolist() == sb.OutputsAsNumpy().tolist()
    n = sa.TensorsLength()
    assert sb.TensorsLength() >= n
    for t in range(n):
        ta, tb = sa.Tensors(t), sb.Tensors(t)
        da, db = dump(ta), dump(tb)
        data_a, data_b = buffer_data(a, ta.Buffer()), buffer_data(b, tb.Buffer())
        if t in converted:
            assert tb.Type() == FLOAT16
            expected = np.clip(np.frombuffer(data_a, "<f4"), -65504, 65504).astype("<f2")
            assert data_b == expected.tobytes(), f"tensor {t}: float16 data differs"
            for key in ("Type", "Buffer"):
                da.pop(key), db.pop(key)
        else:
            assert data_a == data_b, f"subgraph {s} tensor {t}: data changed"
            da.pop("Buffer"), db.pop("Buffer")
        assert da == db, f"subgraph {s} tensor {t}: fields changed"

    # Operators: drop the added DEQUANTIZE ops; the rest are the originals in order. The DEQUANTIZE
    # ops of constants lead the subgraph, in the order the originals first read the constants; a
    # sparse constant's DENSIFY writes a new float16 tensor, dequantized right after it into the
    # DENSIFY's original output.
    ops_b = [sb.Operators(o) for o in range(sb.OperatorsLength())]
    producer: dict[int, int] = {}
    added: dict[int, int] = {}  # new tensor -> converted tensor it dequantizes
    densified: dict[int, int] = {}  # new float16 tensor a DENSIFY writes -> the original output its DEQUANTIZE writes
    added_codes: set[int] = set()
    constant_positions: list[int] = []
    originals = []
    for o, op in enumerate(ops_b):
        outputs = op.OutputsAsNumpy().tolist()
        inputs = op.InputsAsNumpy().tolist()
        is_dequantize = b_ops[op.OpcodeIndex()] == DEQUANTIZE and len(inputs) == 1 and len(outputs) == 1
        if is_dequantize and outputs[0] >= n and inputs[0] in converted:
            (source,), (target,) = inputs, outputs
            assert sb.Tensors(target).Type() == FLOAT32
            assert sb.Tensors(target).ShapeAsNumpy().tolist() == sb.Tensors(source).ShapeAsNumpy().tolist()
            assert dump(sb.Tensors(target))["ShapeSignature"] == dump(sb.Tensors(source))["ShapeSignature"]
            assert target not in added
            added[target] = source
            added_codes.add(op.OpcodeIndex())
            constant_positions.append(o)
        elif is_dequantize and inputs[0] >= n and outputs[0] < n and sb.Tensors(inputs[0]).Type() == FLOAT16:
            (half,), (target,) = inputs, outputs
            assert sb.Tensors(target).Type() == FLOAT32
            assert o >= 1 and half in ops_b[o - 1].OutputsAsNumpy().tolist(), (
                "a sparse DEQUANTIZE not right after its DENSIFY"
            )
            densified[half] = target
            added[half] = -1
            added_codes.add(op.OpcodeIndex())
        else:
            originals.append(o)
        for x in outputs:
            producer[x] = o
    assert len(originals) == sa.OperatorsLength()
    assert constant_positions == list(range(len(constant_positions))), (
        "the constants' DEQUANTIZE ops do not lead the subgraph"
    )
    first_use: list[int] = []
    for oa in range(sa.OperatorsLength()):
        for x in sa.Operators(oa).InputsAsNumpy().tolist():
            if x in converted and x not in first_use and b_ops[ops_b[originals[oa]].OpcodeIndex()] != DENSIFY:
                first_use.append(x)
    assert [ops_b[o].InputsAsNumpy().tolist()[0] for o in constant_positions] == first_use, (
        "not in the order of first use"
    )
    consumers_of_half: dict[int, list[int]] = {}
    for oa, ob in zip(range(sa.OperatorsLength()), originals):
        opa, opb = sa.Operators(oa), ops_b[ob]
        ia, ib = opa.InputsAsNumpy().tolist(), opb.InputsAsNumpy().tolist()
        assert len(ia) == len(ib)
        sparse_read = b_ops[opb.OpcodeIndex()] == DENSIFY and any(x in converted for x in ia)
        for x, y in zip(ia, ib):
            if x in converted and not sparse_read:
                assert added.get(y) == x, f"operator {oa} input {x} is not read through its DEQUANTIZE"
                assert producer[y] < ob, "DEQUANTIZE placed after its consumer"
            else:
                assert x == y
        da, db = dump(opa), dump(opb)
        da.pop("Inputs"), db.pop("Inputs")
        if sparse_read:
            (half,) = opb.OutputsAsNumpy().tolist()
            assert densified.get(half) == opa.OutputsAsNumpy().tolist()[0], (
                "a sparse constant's DENSIFY output is not dequantized"
            )
            da.pop("Outputs"), db.pop("Outputs")
        assert da == db, f"operator {oa} changed"
    for o, op in enumerate(ops_b):
        for x in op.InputsAsNumpy().tolist():
            if x in converted:
                consumers_of_half.setdefault(x, []).append(o)
    for t in converted:
        readers = consumers_of_half.get(t, [])
        assert len(readers) == 1 and b_ops[ops_b[readers[0]].OpcodeIndex()] in (DEQUANTIZE, DENSIFY), (
            f"float16 tensor {t} feeds {readers}, not one DEQUANTIZE (or DENSIFY)"
        )
    assert sb.TensorsLength() == n + len(added)
    return added_codes
