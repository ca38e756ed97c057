"""Random runnable models in LiteRT: the float16 model computes exactly what the float32
model computes with its constants rounded to float16.

DEQUANTIZE turns each float16 constant back into float32 exactly, so running the
converted model must give the same bits as running the original model whose
float32 constants were replaced by their float16 roundings, with both the builtin
kernels and the default XNNPACK delegate.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import oracle
import runtime
import tflite_builder as tb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tflite_fp16 import rewrite

ELEMENTWISE = [tb.ADD, tb.MUL, 41, 55, 57]  # ADD, MUL, SUB, MAXIMUM, MINIMUM
WIDTH = 4
values = st.floats(min_value=-1000, max_value=1000, width=32, allow_nan=False)


@st.composite
def runnable_models(draw: st.DrawFn) -> tb.Model:
    ops = draw(st.lists(st.sampled_from(ELEMENTWISE), min_size=1, max_size=6))
    codes = [tb.OperatorCode(op, old_format=draw(st.booleans())) for op in sorted(set(ops))]
    code_of = {code.op: i for i, code in enumerate(codes)}
    buffers: list = [None]
    tensors = [tb.Tensor([WIDTH], name="x")]
    constants: list[int] = []
    operators = []
    current = 0
    for op in ops:
        if constants and draw(st.integers(0, 2)) == 0:
            constant = draw(st.sampled_from(constants))  # one constant read by several operators
        else:
            if len(buffers) > 1 and draw(st.integers(0, 3)) == 0:
                buffer = draw(st.integers(1, len(buffers) - 1))  # equal bytes, one shared buffer
            else:
                buffers.append(tb.float_bytes(draw(st.lists(values, min_size=WIDTH, max_size=WIDTH))))
                buffer = len(buffers) - 1
            tensors.append(tb.Tensor([WIDTH], name=f"c{len(tensors)}", buffer=buffer))
            constant = len(tensors) - 1
            constants.append(constant)
        inputs = [current, constant] if draw(st.booleans()) else [constant, current]
        if draw(st.integers(0, 4)) == 0:
            inputs = [constant, constant]  # both slots of one operator
        tensors.append(tb.Tensor([WIDTH], name=f"t{len(tensors)}"))
        operators.append(tb.Operator(code_of[op], inputs, [len(tensors) - 1]))
        current = len(tensors) - 1
    outputs = [current]
    if constants and draw(st.booleans()):
        outputs.append(constants[0])  # a constant that is also a subgraph output stays float32
    model = tb.Model(
        codes,
        [tb.Subgraph(tensors, operators, inputs=[0], outputs=outputs)],
        buffers,
        signatures=[tb.Signature("serving_default", 0, [("x", 0)], [(f"out{i}", t) for i, t in enumerate(outputs)])],
    )
    return model


def rounded(model: tb.Model, converted: set[int]) -> tb.Model:
    """A copy of the model whose converted constants read their values rounded through
    float16, each from a private float32 buffer."""
    reference = copy.deepcopy(model)
    for t in converted:
        tensor = reference.subgraphs[0].tensors[t]
        values = np.frombuffer(model.buffers[tensor.buffer], "<f4")
        reference.buffers.append(np.clip(values, -65504, 65504).astype("<f2").astype("<f4").tobytes())
        tensor.buffer = len(reference.buffers) - 1
    return reference


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(runnable_models())
def test_float16_model_computes_the_rounded_float32_model(tmp_path: Path, model: tb.Model) -> None:
    source, target, expected = tmp_path / "in.tflite", tmp_path / "out.tflite", tmp_path / "rounded.tflite"
    content = tb.build(model)
    source.write_bytes(content)
    rewrite(source, target)
    converted = {t for (_, t) in oracle.check_rewrite(content, target.read_bytes())}
    expected.write_bytes(tb.build(rounded(model, converted)))
    for resolver in runtime.RESOLVERS:
        want, got = runtime.run(expected, resolver), runtime.run(target, resolver)
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{resolver} {key}")
