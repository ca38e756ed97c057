"""Hypothesis strategies for random valid TFLite models (as tflite_builder descriptions).

The models are structurally valid, not necessarily runnable: they exercise
the rewrite's bookkeeping: several subgraphs, buffers shared across tensors
and types, constants read by several operators and several slots of one
operator, variables, constant subgraph outputs, integer tensors, hybrid
operators, custom operators, old-format operator codes, existing DEQUANTIZE
codes, metadata (min_runtime_version among it), signatures, trailing bytes.
"""

from __future__ import annotations

import numpy as np
import tflite_builder as tb
from hypothesis import strategies as st

OP_CHOICES = [tb.FULLY_CONNECTED, tb.ADD, tb.MUL, tb.CONV_2D, tb.GATHER, tb.CUSTOM, tb.DEQUANTIZE, 150]  # 150: > 127

special_floats = st.sampled_from(
    [0.0, -0.0, 1e-9, -3e-8, 6e-8, 65504.0, 65519.0, 65520.0, -1e6, float("inf"), float("-inf"), float("nan")]
)
floats = st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=True), special_floats)


@st.composite
def shapes(draw: st.DrawFn) -> list[int]:
    return draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))


@st.composite
def models(draw: st.DrawFn) -> tb.Model:
    codes = []
    for op in draw(st.lists(st.sampled_from(OP_CHOICES), min_size=1, max_size=5)):
        old = draw(st.booleans()) and op <= 127
        codes.append(
            tb.OperatorCode(
                op,
                version=draw(st.integers(1, 4)),
                custom_code="MyCustomOp" if op == tb.CUSTOM else None,
                old_format=old,
            )
        )
    buffers: list[bytes | None] = [None]
    # A pool of constant byte strings; tensors of the same byte size may share one.
    subgraphs = []
    for s in range(draw(st.integers(1, 3))):
        tensors = []
        n_activations = draw(st.integers(1, 4))
        for a in range(n_activations):
            tensors.append(
                tb.Tensor(draw(shapes()), name=f"s{s}_act{a}", shape_signature=draw(st.sampled_from([None, [-1]])))
            )
        for c in range(draw(st.integers(0, 6))):
            shape = draw(shapes())
            count = int(np.prod(shape, dtype=np.int64))
            kind = draw(st.sampled_from(["float"] * 6 + ["int32", "int8", "variable"]))
            if kind == "int32" or kind == "int8":
                dtype = "<i4" if kind == "int32" else "i1"
                data = np.asarray(
                    draw(st.lists(st.integers(-100, 100), min_size=count, max_size=count)), dtype
                ).tobytes()
                tensor_type = tb.INT32 if kind == "int32" else tb.INT8
            else:
                data = tb.float_bytes(draw(st.lists(floats, min_size=count, max_size=count)))
                tensor_type = tb.FLOAT32
            same_size = [i for i, b in enumerate(buffers) if b is not None and len(b) == len(data)]
            if same_size and draw(st.integers(0, 2)) > 0:
                buffer = draw(st.sampled_from(same_size))  # share (possibly across types)
            else:
                buffers.append(data)
                buffer = len(buffers) - 1
            quantization = ([0.5], [0]) if tensor_type == tb.INT8 else None
            tensors.append(
                tb.Tensor(
                    shape,
                    type=tensor_type,
                    buffer=buffer,
                    name=f"s{s}_const{c}",
                    is_variable=kind == "variable",
                    quantization=quantization,
                    shape_signature=draw(st.sampled_from([None, shape])),
                )
            )
        n = len(tensors)
        operators = []
        for _o in range(draw(st.integers(1, 6))):
            inputs = draw(st.lists(st.integers(-1, n - 1), min_size=0, max_size=3))
            if n > n_activations:  # most operators read a constant or two
                inputs += draw(st.lists(st.integers(n_activations, n - 1), min_size=1, max_size=2))
            output = draw(st.integers(0, n_activations - 1))
            opcode = draw(st.integers(0, len(codes) - 1))
            fused = draw(st.sampled_from([None, 0, 1]))
            custom = b"\x01\x02opts" if codes[opcode].op == tb.CUSTOM else None
            operators.append(tb.Operator(opcode, inputs, [output], fused_activation=fused, custom_options=custom))
        outputs = draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True))
        subgraphs.append(tb.Subgraph(tensors, operators, inputs=[0], outputs=outputs, name=f"subgraph{s}"))
    metadata = []
    if draw(st.booleans()):
        buffers.append(tb.version_bytes(draw(st.sampled_from(["1.5.0", "1.14.0", "1.15.0", "2.3.0", "1.13.1"]))))
        metadata.append(("min_runtime_version", len(buffers) - 1))
    if draw(st.booleans()):
        # A metadata entry that shares a buffer with a tensor (equal bytes deduplicated).
        candidates = list(range(1, len(buffers)))
        metadata.append(("other_metadata", draw(st.sampled_from(candidates))) if candidates else ("empty", 0))
    metadata_buffer = [b for _, b in metadata] if metadata and draw(st.booleans()) else []
    signatures = []
    if draw(st.booleans()):
        signatures.append(
            tb.Signature(
                "serving_default", 0, [("in", 0)], [("out", subgraphs[0].outputs[0])] if subgraphs[0].outputs else []
            )
        )
    trailing = draw(st.sampled_from([b"", b"PK\x03\x04 trailing zip bytes" * 3]))
    return tb.Model(codes, subgraphs, buffers, metadata, signatures, trailing=trailing, metadata_buffer=metadata_buffer)
