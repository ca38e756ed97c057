"""Where the new DEQUANTIZE ops go: first in each subgraph, in the order of first use, as
TensorFlow places them, so that a delegate taking the rest of the graph sees it whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import oracle
import pytest
import runtime
import tflite_builder as tb

from tflite_fp16 import rewrite, verify

DATA = Path(__file__).resolve().parent / "data"
FP32_MODELS = sorted(p.name.split(".")[0] for p in DATA.glob("*.fp32.tflite"))


def operators(content: bytes) -> list[list[int]]:
    """Per subgraph, the builtin operator of each operator, in order."""
    model = oracle.tflite.Model.GetRootAs(content, 0)
    out = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        out.append(
            [oracle.op_of(model.OperatorCodes(sg.Operators(o).OpcodeIndex())) for o in range(sg.OperatorsLength())]
        )
    return out


def without_variable_dequantize(content: bytes) -> list[list[int]]:
    """TensorFlow also initialises LSTM state variables through DEQUANTIZE ops; we do not."""
    model = oracle.tflite.Model.GetRootAs(content, 0)
    out = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        ops = []
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            code = oracle.op_of(model.OperatorCodes(op.OpcodeIndex()))
            if code == oracle.DEQUANTIZE and sg.Tensors(int(op.OutputsAsNumpy()[0])).IsVariable():
                continue
            ops.append(code)
        out.append(ops)
    return out


def leading_dequantize_run(ops: list[int]) -> int:
    run = 0
    while run < len(ops) and ops[run] == oracle.DEQUANTIZE:
        run += 1
    return run


@pytest.mark.parametrize("name", FP32_MODELS)
def test_every_subgraph_has_tensorflows_operator_order(name: str, tmp_path: Path) -> None:
    """Every subgraph, WHILE bodies and conditions and IF branches included: the operators of our
    file come in the order of TensorFlow's own float16 file."""
    out = tmp_path / "out.tflite"
    report = rewrite(DATA / f"{name}.fp32.tflite", out, lossy="convert")
    assert report.tensors_converted
    ours = operators(out.read_bytes())
    assert ours == without_variable_dequantize((DATA / f"{name}.tf_fp16.tflite").read_bytes())
    for ops in ours:  # after the leading DEQUANTIZE ops, none (the sparse kind aside)
        assert oracle.DEQUANTIZE not in ops[leading_dequantize_run(ops) :]


def test_control_flow_bodies_each_start_with_their_dequantize_ops(tmp_path: Path) -> None:
    out = tmp_path / "out.tflite"
    source = DATA / "control_flow.fp32.tflite"
    rewrite(source, out)
    converted = oracle.check_rewrite(source.read_bytes(), out.read_bytes())
    per_subgraph = {s: sum(1 for sg, _ in converted if sg == s) for s in range(len(operators(out.read_bytes())))}
    assert sum(1 for n in per_subgraph.values() if n) >= 3  # the main graph, the loop body, a branch
    for s, ops in enumerate(operators(out.read_bytes())):
        assert leading_dequantize_run(ops) == per_subgraph[s]


def sparse_and_dense_model() -> tb.Model:
    """h = x + a; d = DENSIFY(w_sparse); h2 = h + d; y = h2 * b (a, b dense constants)."""
    dense = np.array([[1.5, 0, 0.25, 0], [0, 0, -2, 4]], np.float32)
    values, structure = tb.csr(dense)
    return tb.Model(
        operator_codes=[tb.OperatorCode(tb.ADD), tb.OperatorCode(tb.DENSIFY), tb.OperatorCode(tb.MUL)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([2, 4], name="x"),
                    tb.Tensor([2, 4], name="a", buffer=1),
                    tb.Tensor([2, 4], name="h"),
                    tb.Tensor([2, 4], name="w_sparse", buffer=2, csr=structure),
                    tb.Tensor([2, 4], name="d"),
                    tb.Tensor([2, 4], name="h2"),
                    tb.Tensor([2, 4], name="b", buffer=3),
                    tb.Tensor([2, 4], name="y"),
                ],
                operators=[
                    tb.Operator(0, [0, 1], [2]),
                    tb.Operator(1, [3], [4]),
                    tb.Operator(0, [2, 4], [5]),
                    tb.Operator(2, [5, 6], [7]),
                ],
                inputs=[0],
                outputs=[7],
            )
        ],
        buffers=[None, tb.float_bytes(np.linspace(-1, 1, 8)), values, tb.float_bytes(np.linspace(2, 3, 8))],
        signatures=[tb.Signature("serving_default", 0, [("x", 0)], [("y", 7)])],
    )


def test_sparse_pair_stays_after_its_densify(tmp_path: Path) -> None:
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(sparse_and_dense_model()))
    report = rewrite(source, out)
    assert sorted(c.name for c in report.converted) == ["a", "b", "w_sparse"]
    oracle.check_rewrite(source.read_bytes(), out.read_bytes())
    D, A, M, Q = tb.DENSIFY, tb.ADD, tb.MUL, tb.DEQUANTIZE
    assert operators(out.read_bytes()) == [[Q, Q, A, D, Q, A, M]]
    model = oracle.tflite.Model.GetRootAs(out.read_bytes(), 0).Subgraphs(0)
    assert [model.Operators(o).InputsAsNumpy().tolist()[0] for o in range(2)] == [1, 6]  # a, then b: first use
    result = verify(source, out)
    assert result.passed, result.summary()
    np.testing.assert_allclose(
        runtime.run(out, "builtin")["serving_default/y"],
        runtime.run(source, "builtin")["serving_default/y"],
        rtol=1e-3,
        atol=1e-3,
    )


def test_a_constant_read_many_times_is_dequantized_once_at_the_top(tmp_path: Path) -> None:
    source, out = DATA / "shared_weights.fp32.tflite", tmp_path / "out.tflite"
    rewrite(source, out)
    converted = oracle.check_rewrite(source.read_bytes(), out.read_bytes())
    ops = operators(out.read_bytes())[0]
    assert leading_dequantize_run(ops) == len(converted) == ops.count(oracle.DEQUANTIZE)
