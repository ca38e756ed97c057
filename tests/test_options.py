"""Options that narrow or widen what is converted: keep patterns, min_elements, custom-op inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tflite

import oracle
import runtime
import tflite_builder as tb
from tflite_fp16 import plan_file, rewrite

DATA = Path(__file__).resolve().parent / "data"


def float32_names(path: Path) -> set:  # type: ignore[type-arg]
    model = tflite.Model.GetRootAs(path.read_bytes(), 0)
    sg = model.Subgraphs(0)
    return {sg.Tensors(t).Name().decode() for t in range(sg.TensorsLength()) if sg.Tensors(t).Type() == 0 and oracle.buffer_data(model, sg.Tensors(t).Buffer())}


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
        [sys.executable, "-m", "tflite_fp16", "--keep", "*dense_1/*", "--keep", "*dense_2_1/BiasAdd",
         "--min-elements", "0", str(DATA / "tiny_mlp.fp32.tflite"), str(out)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 tensors converted")
    assert float32_names(out) == {"sequential_1/dense_1/MatMul", "sequential_1/dense_1/BiasAdd", "sequential_1/dense_2_1/BiasAdd"}
    bad = subprocess.run([sys.executable, "-m", "tflite_fp16", "--min-elements", "-5", str(DATA / "tiny_mlp.fp32.tflite"), str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "min-elements" in bad.stderr
