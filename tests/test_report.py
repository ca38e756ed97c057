"""The per-tensor report: every JSON field, the text at each verbosity, and the one-line summaries."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import oracle
import pytest
import tflite
import tflite_builder as tb

from tflite_fp16 import Options, rewrite
from tflite_fp16.conversion.plan import REASONS
from tflite_fp16.keepfile import KeepEntry, content_digest, render_keep_file

DATA = Path(__file__).resolve().parent / "data"
CONVERTED_FIELDS = {
    "subgraph",
    "tensor",
    "name",
    "shape",
    "elements",
    "saturated",
    "infinity",
    "flushed",
    "max_abs_error",
    "rel_l2_error",
    "lossy",
}
KEPT_FIELDS = {"subgraph", "tensor", "name", "shape", "elements", "reason", "detail"}
TOP_FIELDS = {
    "tool",
    "version",
    "input",
    "output",
    "dry_run",
    "size_before",
    "size_after",
    "layout",
    "unchanged",
    "converted",
    "kept",
    "kept_by_reason",
    "dequantize_ops_added",
    "min_runtime_version",
    "metadata",
    "warnings",
    "size_advice",
    "options",
    "seconds",
    "verify",
    "auto",
}


def run(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True)


def test_json_report_has_every_field_and_true_numbers(tmp_path: Path) -> None:
    source, out = DATA / "lstm_seq.fp32.tflite", tmp_path / "out.tflite"
    result = run("--json", "-", str(source), str(out))
    assert result.returncode == 0
    data = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    assert set(data) == TOP_FIELDS
    assert data["tool"] == "tflite-fp16" and data["input"] == str(source) and data["output"] == str(out)
    assert data["size_before"] == source.stat().st_size and data["size_after"] == out.stat().st_size
    assert data["layout"] == "normal" and data["dry_run"] is False and data["unchanged"] is False
    assert data["min_runtime_version"] == {"before": "1.13.1", "after": "1.15.0"}
    assert [(m["name"], m["action"], m["before"], m["after"]) for m in data["metadata"]] == [
        ("min_runtime_version", "raised", "1.13.1", "1.15.0"),
        ("reduced_precision_support", "added", None, "fp16accfp32"),
        (
            "CONVERSION_METADATA",
            "updated",
            "model_optimization_modes []",
            "model_optimization_modes [PTQ_FLOAT16], model_hash of the output",
        ),
    ]
    assert data["options"]["fp16_compute"] is False
    assert data["verify"] is None and data["warnings"] == [] and data["seconds"] > 0
    model_in = tflite.Model.GetRootAs(source.read_bytes(), 0)
    model_out = tflite.Model.GetRootAs(out.read_bytes(), 0)
    assert len(data["converted"]) == 26 == data["dequantize_ops_added"]
    assert (
        sum(
            model_out.Subgraphs(s).OperatorsLength() - model_in.Subgraphs(s).OperatorsLength()
            for s in range(model_in.SubgraphsLength())
        )
        == data["dequantize_ops_added"]
    )
    for entry in data["converted"]:
        assert set(entry) == CONVERTED_FIELDS
        tensor = model_in.Subgraphs(entry["subgraph"]).Tensors(entry["tensor"])
        assert tensor.Name().decode() == entry["name"] and tensor.ShapeAsNumpy().tolist() == entry["shape"]
        values = np.frombuffer(oracle.buffer_data(model_in, tensor.Buffer()), "<f4").astype(np.float64)
        half = values.astype("<f2").astype(np.float64)
        assert entry["elements"] == values.size
        assert entry["max_abs_error"] == pytest.approx(float(np.abs(half - values).max()), rel=1e-6)
        assert entry["rel_l2_error"] == pytest.approx(
            float(np.linalg.norm(half - values) / np.linalg.norm(values)), rel=1e-4
        )
        assert entry["saturated"] == 0 and entry["flushed"] == int(np.count_nonzero((half == 0) & (values != 0)))
    assert data["kept"] == [] and data["kept_by_reason"] == {}  # its variables (LSTM states) hold no data
    kept = json.loads(run("--json", "-", "--min-elements", "100", str(source), str(out)).stdout)["kept"]
    assert kept and all(set(e) == KEPT_FIELDS and e["reason"] == "min_elements" for e in kept)
    assert all(e["elements"] < 100 and "--min-elements" in e["detail"] for e in kept)


def test_json_of_a_dry_run_has_no_output_sizes_and_of_infinities_strings(tmp_path: Path) -> None:
    source = tmp_path / "in.tflite"
    source.write_bytes(tb.build(tb.frontend_model()))
    result = run("--dry-run", "--lossy", "convert", "--json", "-", str(source))
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and "size_after" not in data and "layout" not in data and data["output"] is None
    clamp = next(e for e in data["converted"] if e["name"] == "frontend/clamp_max")
    assert clamp["max_abs_error"] == "inf" and clamp["rel_l2_error"] == "inf" and clamp["infinity"] is True
    assert clamp["lossy"].startswith("value +inf")
    assert not list(tmp_path.glob("*.tflite"))[1:]  # only the input
    assert len(data["warnings"]) == 2
    # The dry run's planned size is the size the real conversion writes.
    assert run("--lossy", "convert", "-q", str(source), str(tmp_path / "real.tflite")).returncode == 0
    assert data["planned_size"] == (tmp_path / "real.tflite").stat().st_size


def test_json_to_a_file_keeps_the_text_on_stdout(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = run("--json", str(report_path), str(DATA / "tiny_mlp.fp32.tflite"), str(tmp_path / "out.tflite"))
    assert result.stdout.startswith("6 tensors converted") and json.loads(report_path.read_text())["converted"]


def test_verbosity(tmp_path: Path) -> None:
    source, out = DATA / "small_cnn.fp32.tflite", str(tmp_path / "out.tflite")
    quiet = run("-q", str(source), out)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    verbose = run("-v", str(source), out).stdout.splitlines()
    assert len(verbose) == 1 + 10 + 3 and all(
        line.startswith("  converted subgraph 0 tensor") for line in verbose[1:11]
    )
    assert verbose[11:] == [
        "  metadata min_runtime_version raised: 1.15.0 (was 1.6.0)",
        "  metadata reduced_precision_support added: fp16accfp32",
        "  metadata CONVERSION_METADATA updated: model_optimization_modes [PTQ_FLOAT16], model_hash of the output "
        "(was model_optimization_modes [])",
    ]
    assert "max abs error" in verbose[1] and "rel L2" in verbose[1]
    assert run("-q", "-v", str(source), out).returncode == 2


def test_nothing_to_convert_says_why_and_copies_the_bytes(tmp_path: Path) -> None:
    for name, why in [
        ("small_cnn.tf_fp16.tflite", "10 constants are float16 already"),
        ("int8_full.int8.tflite", "no float32 constant"),
    ]:
        out = tmp_path / name
        result = run(str(DATA / name), str(out))
        assert result.returncode == 0 and result.stdout.startswith("nothing to convert: ")
        assert why in result.stdout and len(result.stdout.splitlines()) == 1
        assert out.read_bytes() == (DATA / name).read_bytes()


def test_escaped_names_keep_messages_on_one_line(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].tensors[1].name = "evil\x1b[2J\nname"
    source = tmp_path / "in.tflite"
    source.write_bytes(tb.build(model))
    result = run("-v", "--keep", "evil*", str(source), str(tmp_path / "out.tflite"))
    assert "\x1b" not in result.stdout and "'evil\\x1b[2J\\nname'" in result.stdout
    assert len(result.stdout.splitlines()) == 2


def test_report_object_properties(tmp_path: Path) -> None:
    report = rewrite(DATA / "control_flow.fp32.tflite", tmp_path / "out.tflite", Options(min_elements=2))
    assert report.options.min_elements == 2
    order = [(e.subgraph, e.tensor) for e in report.converted]
    assert order == sorted(order) and len({s for s, _ in order}) > 1  # several subgraphs, in order
    assert all(math.isfinite(e.rel_l2_error) for e in report.converted)
    assert report.to_dict()["options"]["min_elements"] == 2
    assert report.kept and all(k.reason for k in report.kept)


def test_every_reason_code_on_one_model(tmp_path: Path) -> None:
    """One float32 constant per reason a constant stays float32, and one that converts."""
    names = [
        "x",
        "out_const",
        "in_const",
        "var_const",
        "written_const",
        "unread_const",
        "kept_by_pattern",
        "read_by_mul",
        "tiny",
        "custom_input",
        "hybrid_bias",
        "sparse_const",
        "epsilon",
        "ordinary",
        "h",
        "y",
        "int8_w",
        "z",
    ]
    index = {n: i for i, n in enumerate(names)}
    buffers: list = [None]

    def constant(name: str, values, **extra) -> tb.Tensor:  # type: ignore[no-untyped-def]
        buffers.append(tb.float_bytes(values))
        return tb.Tensor([len(values)], name=name, buffer=len(buffers) - 1, **extra)

    tensors = [
        tb.Tensor([4], name="x"),
        constant("out_const", [1, 2, 3, 4]),
        constant("in_const", [1, 2, 3, 4]),
        constant("var_const", [1, 2, 3, 4], is_variable=True),
        constant("written_const", [1, 2, 3, 4]),
        constant("unread_const", [1, 2, 3, 4]),
        constant("kept_by_pattern", [1, 2, 3, 4]),
        constant("read_by_mul", [1, 2, 3, 4]),
        constant("tiny", [1.0]),
        constant("custom_input", [1, 2, 3, 4]),
        constant("hybrid_bias", [1, 2]),
        constant("sparse_const", [1, 2, 3, 4], sparse=True),
        constant("epsilon", [1e-10]),
        constant("ordinary", [0.5, 0.25, 2, 3]),
        tb.Tensor([4], name="h"),
        tb.Tensor([2], name="y"),
    ]
    buffers.append(np.array([1, -1, 2, -2, 3, -3, 4, -4], "i1").tobytes())
    tensors.append(tb.Tensor([2, 4], type=tb.INT8, name="int8_w", buffer=len(buffers) - 1, quantization=([0.5], [0])))
    tensors.append(tb.Tensor([4], name="z"))
    i = index
    codes = [
        tb.OperatorCode(tb.ADD),
        tb.OperatorCode(tb.MUL),
        tb.OperatorCode(tb.CUSTOM, custom_code="MyOp"),
        tb.OperatorCode(tb.FULLY_CONNECTED),
    ]
    operators = [
        tb.Operator(0, [i["x"], i["in_const"]], [i["written_const"]]),
        tb.Operator(0, [i["x"], i["var_const"]], [i["h"]]),
        tb.Operator(0, [i["h"], i["kept_by_pattern"]], [i["h"]]),
        tb.Operator(1, [i["h"], i["read_by_mul"]], [i["h"]]),
        tb.Operator(0, [i["h"], i["tiny"]], [i["h"]]),
        tb.Operator(2, [i["h"], i["custom_input"]], [i["h"]], custom_options=b"opts"),
        tb.Operator(3, [i["h"], i["int8_w"], i["hybrid_bias"]], [i["y"]]),
        tb.Operator(0, [i["h"], i["sparse_const"]], [i["z"]]),
        tb.Operator(0, [i["z"], i["epsilon"]], [i["z"]]),
        tb.Operator(0, [i["z"], i["ordinary"]], [i["z"]]),
        tb.Operator(0, [i["z"], i["out_const"]], [i["z"]]),
    ]
    model = tb.Model(
        codes,
        [tb.Subgraph(tensors, operators, inputs=[i["x"], i["in_const"]], outputs=[i["y"], i["z"], i["out_const"]])],
        buffers,
    )
    path = tmp_path / "reasons.tflite"
    path.write_bytes(tb.build(model))
    report = rewrite(path, None, keep=["kept_by_*"], skip_ops=["MUL"], min_elements=2)
    reasons = {k.name: k.reason for k in report.kept}
    assert reasons == {
        "out_const": "subgraph_output",
        "in_const": "subgraph_input",
        "var_const": "variable",
        "written_const": "written_by_operator",
        "unread_const": "unread",
        "kept_by_pattern": "keep_pattern",
        "read_by_mul": "skip_op",
        "tiny": "min_elements",
        "custom_input": "custom_operator",
        "hybrid_bias": "hybrid_operator",
        "sparse_const": "sparse",
        "epsilon": "min_elements",
    }
    # The exact forms of keep: by (subgraph, tensor), and a keep file's name with its shape and data.
    by_id = rewrite(path, None, keep=["kept_by_*"], skip_ops=["MUL"], min_elements=2, keep_tensors=[(0, i["ordinary"])])
    assert {k.name: k.reason for k in by_id.kept}["ordinary"] == "keep_tensor"
    keep = tmp_path / "keep.txt"
    digest = content_digest(np.array([0.5, 0.25, 2, 3], "<f4"))
    keep.write_text(render_keep_file([KeepEntry("exact", "ordinary", (4,), digest)]))
    by_name = rewrite(path, None, keep=["kept_by_*"], skip_ops=["MUL"], min_elements=2, keep_from=keep)
    assert {k.name: k.reason for k in by_name.kept}["ordinary"] == "keep_name"
    # lossy: below; tolerance: test_auto.py; external and quantization_detail: test_newest_schema.py
    found = set(reasons.values()) | {"keep_tensor", "keep_name"}
    assert found | {"lossy", "tolerance", "external", "quantization_detail"} == set(REASONS)
    assert [c.name for c in report.converted] == ["ordinary"]
    # The option reasons come before the lossy check: without min_elements, 'epsilon' is lossy.
    report = rewrite(path, None, keep=["kept_by_*"], skip_ops=["MUL"])
    assert {k.name: k.reason for k in report.kept}["epsilon"] == "lossy"
    assert [c.name for c in report.converted] == ["tiny", "ordinary"]
    assert all(k.detail for k in report.kept)
