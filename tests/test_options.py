"""Options that narrow or widen what is converted: keep patterns, min_elements, custom-op inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import oracle
import pytest
import runtime
import tflite
import tflite_builder as tb

from tflite_fp16 import plan_file, rewrite

DATA = Path(__file__).resolve().parent / "data"


def float32_names(path: Path) -> set:  # type: ignore[type-arg]
    model = tflite.Model.GetRootAs(path.read_bytes(), 0)
    sg = model.Subgraphs(0)
    return {
        sg.Tensors(t).Name().decode()
        for t in range(sg.TensorsLength())
        if sg.Tensors(t).Type() == 0 and oracle.buffer_data(model, sg.Tensors(t).Buffer())
    }


def test_keep_patterns(tmp_path: Path) -> None:
    source, out = DATA / "tiny_mlp.fp32.tflite", tmp_path / "out.tflite"
    report = rewrite(source, out, keep=["*dense_1/*"])
    assert report.tensors_converted == 4
    assert float32_names(out) == {"sequential_1/dense_1/MatMul", "sequential_1/dense_1/BiasAdd"}
    assert [k.reason for k in report.kept] == ["keep_pattern", "keep_pattern"]
    assert "'*dense_1/*'" in report.kept[0].detail
    oracle.check_rewrite(source.read_bytes(), out.read_bytes(), keep=["*dense_1/*"])
    assert runtime.max_abs_error(runtime.run(source), runtime.run(out)) < 1e-3


def test_min_elements(tmp_path: Path) -> None:
    source, out = DATA / "small_cnn.fp32.tflite", tmp_path / "out.tflite"
    report = rewrite(source, out, min_elements=100)
    small = [k for k in report.kept if k.reason == "min_elements"]
    assert small and report.tensors_converted == 10 - len(small)
    oracle.check_rewrite(source.read_bytes(), out.read_bytes(), min_elements=100)
    assert runtime.max_abs_error(runtime.run(source), runtime.run(out)) < 1e-4


def test_custom_op_inputs(tmp_path: Path) -> None:
    model = tb.add_model()
    model.operator_codes[0] = tb.OperatorCode(tb.CUSTOM, custom_code="MyOp")
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(model))
    assert plan_file(source).tensors == ()
    report = rewrite(source, out, custom_op_inputs=True)
    assert [t.name for t in report.plan.tensors] == ["w"]
    oracle.check_rewrite(source.read_bytes(), out.read_bytes(), custom_op_inputs=True)


def test_bad_option_values(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="sequence of strings"):
        rewrite(DATA / "tiny_mlp.fp32.tflite", tmp_path / "out.tflite", keep="*bias*")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_elements"):
        rewrite(DATA / "tiny_mlp.fp32.tflite", tmp_path / "out.tflite", min_elements=-1)
    assert not list(tmp_path.iterdir())


def test_cli_options(tmp_path: Path) -> None:
    out = tmp_path / "out.tflite"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tflite_fp16",
            "--keep",
            "*dense_1/*",
            "--keep",
            "*dense_2_1/BiasAdd",
            "--min-elements",
            "0",
            str(DATA / "tiny_mlp.fp32.tflite"),
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 tensors converted")
    assert float32_names(out) == {
        "sequential_1/dense_1/MatMul",
        "sequential_1/dense_1/BiasAdd",
        "sequential_1/dense_2_1/BiasAdd",
    }
    bad = subprocess.run(
        [sys.executable, "-m", "tflite_fp16", "--min-elements", "-5", str(DATA / "tiny_mlp.fp32.tflite"), str(out)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "min-elements" in bad.stderr


def two_ops_sharing_a_constant() -> tb.Model:
    """x -> MUL(x, w) -> ADD(., w) -> ADD(., b): w is read by MUL and by ADD."""
    return tb.Model(
        operator_codes=[tb.OperatorCode(tb.MUL), tb.OperatorCode(tb.ADD)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([4], name="x"),
                    tb.Tensor([4], name="w", buffer=1),
                    tb.Tensor([4], name="t"),
                    tb.Tensor([4], name="u"),
                    tb.Tensor([4], name="b", buffer=2),
                    tb.Tensor([4], name="y"),
                ],
                operators=[tb.Operator(0, [0, 1], [2]), tb.Operator(1, [2, 1], [3]), tb.Operator(1, [3, 4], [5])],
                inputs=[0],
                outputs=[5],
            )
        ],
        buffers=[None, tb.float_bytes([0.5, 1.5, -2, 3]), tb.float_bytes([1, 2, 3, 4])],
    )


def test_skip_op_keeps_every_constant_it_reads_even_when_shared(tmp_path: Path) -> None:
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(two_ops_sharing_a_constant()))
    report = rewrite(source, out, skip_ops=["mul"])  # names are case-insensitive
    assert [(k.name, k.reason) for k in report.kept] == [("w", "skip_op")]
    assert "operator 0 (MUL)" in report.kept[0].detail and "'MUL'" in report.kept[0].detail
    assert [c.name for c in report.converted] == ["b"] and report.warnings == ()
    oracle.check_rewrite(source.read_bytes(), out.read_bytes(), skip_ops=["MUL"])
    assert runtime.max_abs_error(runtime.run(source), runtime.run(out)) == 0
    report = rewrite(source, out, skip_ops=["ADD"])
    assert {k.name for k in report.kept} == {"w", "b"} and report.unchanged


def test_skip_op_custom_by_name(tmp_path: Path) -> None:
    model = tb.add_model()
    model.operator_codes[0] = tb.OperatorCode(tb.CUSTOM, custom_code="MyOp")
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(model))
    report = rewrite(source, out, custom_op_inputs=True, skip_ops=["CUSTOM:MyOp"])
    assert [(k.name, k.reason) for k in report.kept] == [("w", "skip_op")]
    report = rewrite(source, out, custom_op_inputs=True, skip_ops=["CUSTOM:Other"])
    assert report.tensors_converted == 1
    assert report.warnings == ("skip_ops 'CUSTOM:Other' matches no operator of the model",)


def test_keep_pattern_matches_parts_of_fused_names(tmp_path: Path) -> None:
    source, out = DATA / "small_cnn.fp32.tflite", tmp_path / "out.tflite"
    fused = [e for e in rewrite(source, None).converted if ";" in e.name]
    assert fused
    part = fused[0].name.split(";")[1]
    report = rewrite(source, out, keep=[part])  # a whole later part, no wildcard
    assert fused[0].name in {k.name for k in report.kept}
    oracle.check_rewrite(source.read_bytes(), out.read_bytes(), keep=[part])


def test_options_that_match_nothing_are_warnings(tmp_path: Path) -> None:
    source = DATA / "tiny_mlp.fp32.tflite"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tflite_fp16",
            "--keep",
            "*no_such_tensor*",
            "--skip-op",
            "RESIZE_BILINEAR",
            "--json",
            str(tmp_path / "r.json"),
            str(source),
            str(tmp_path / "out.tflite"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "tflite-fp16: warning: keep pattern '*no_such_tensor*' matches no float32 constant",
        "tflite-fp16: warning: skip_ops 'RESIZE_BILINEAR' matches no operator of the model",
    ]
    import json

    assert len(json.loads((tmp_path / "r.json").read_text())["warnings"]) == 2


def test_unknown_skip_op_and_bad_options_are_refused(tmp_path: Path) -> None:
    from tflite_fp16 import Options

    with pytest.raises(ValueError, match="unknown operator 'FULLY_CONNECTD'"):
        Options(skip_ops=["FULLY_CONNECTD"])
    with pytest.raises(ValueError, match="lossy must be one of keep, convert, error"):
        Options(lossy="maybe")
    with pytest.raises(TypeError, match="unknown option kep"):
        rewrite(DATA / "tiny_mlp.fp32.tflite", tmp_path / "out.tflite", kep=["*"])
    assert Options.resolve(Options(min_elements=3), lossy="error") == Options(min_elements=3, lossy="error")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tflite_fp16",
            "--skip-op",
            "NOPE",
            str(DATA / "tiny_mlp.fp32.tflite"),
            str(tmp_path / "out.tflite"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "unknown operator 'NOPE'" in result.stderr
    assert not list(tmp_path.iterdir())


def test_every_entry_point_takes_the_same_options(tmp_path: Path) -> None:
    from tflite_fp16 import Options, rewrite_bytes

    options = Options(keep=["*dense_1/*"], lossy="convert")
    source = DATA / "tiny_mlp.fp32.tflite"
    by_file = rewrite(source, tmp_path / "a.tflite", options)
    by_keywords = rewrite(source, tmp_path / "b.tflite", keep=["*dense_1/*"], lossy="convert")
    data, by_bytes = rewrite_bytes(source.read_bytes(), options)
    plan = plan_file(source, options)
    assert by_file.converted == by_keywords.converted == by_bytes.converted
    assert plan.tensors == by_file.plan.tensors
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes() == data
