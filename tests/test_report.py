"""The per-tensor report: every JSON field, the text at each verbosity, and the one-line summaries."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tflite

import oracle
import tflite_builder as tb
from tflite_fp16 import Options, rewrite
from tflite_fp16.plan import REASONS

DATA = Path(__file__).resolve().parent / "data"
CONVERTED_FIELDS = {"subgraph", "tensor", "name", "shape", "elements", "saturated", "infinity", "flushed",
                    "max_abs_error", "rel_l2_error", "lossy"}
KEPT_FIELDS = {"subgraph", "tensor", "name", "shape", "elements", "reason", "detail"}
TOP_FIELDS = {"tool", "version", "input", "output", "dry_run", "size_before", "size_after", "layout", "unchanged", "converted",
              "kept", "kept_by_reason", "dequantize_ops_added", "min_runtime_version", "warnings", "options", "seconds", "verify"}


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
    assert data["verify"] is None and data["warnings"] == [] and data["seconds"] > 0
    model_in = tflite.Model.GetRootAs(source.read_bytes(), 0)
    model_out = tflite.Model.GetRootAs(out.read_bytes(), 0)
    assert len(data["converted"]) == 26 == data["dequantize_ops_added"]
    assert sum(model_out.Subgraphs(s).OperatorsLength() - model_in.Subgraphs(s).OperatorsLength()
               for s in range(model_in.SubgraphsLength())) == data["dequantize_ops_added"]
    for entry in data["converted"]:
        assert set(entry) == CONVERTED_FIELDS
        tensor = model_in.Subgraphs(entry["subgraph"]).Tensors(entry["tensor"])
        assert tensor.Name().decode() == entry["name"] and tensor.ShapeAsNumpy().tolist() == entry["shape"]
        values = np.frombuffer(oracle.buffer_data(model_in, tensor.Buffer()), "<f4").astype(np.float64)
        half = values.astype("<f2").astype(np.float64)
        assert entry["elements"] == values.size
        assert entry["max_abs_error"] == pytest.approx(float(np.abs(half - values).max()), rel=1e-6)
        assert entry["rel_l2_error"] == pytest.approx(float(np.linalg.norm(half - values) / np.linalg.norm(values)), rel=1e-4)
        assert entry["saturated"] == 0 and entry["flushed"] == int(np.count_nonzero((half == 0) & (values != 0)))
    assert data["kept"] == [] and data["kept_by_reason"] == {}  # its variables (LSTM states) hold no data
    kept = json.loads(run("--json", "-", "--min-elements", "100", str(source), str(out)).stdout)["kept"]
    assert kept and all(set(e) == KEPT_FIELDS and e["reason"] == "min_elements" for e in kept)
    assert all(e["elements"] < 100 and "min_elements" in e["detail"] for e in kept)


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


def test_json_to_a_file_keeps_the_text_on_stdout(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = run("--json", str(report_path), str(DATA / "tiny_mlp.fp32.tflite"), str(tmp_path / "out.tflite"))
    assert result.stdout.startswith("6 tensors converted") and json.loads(report_path.read_text())["converted"]


def test_verbosity(tmp_path: Path) -> None:
    source, out = DATA / "small_cnn.fp32.tflite", str(tmp_path / "out.tflite")
    quiet = run("-q", str(source), out)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    verbose = run("-v", str(source), out).stdout.splitlines()
    assert len(verbose) == 1 + 10 and all(line.startswith("  converted subgraph 0 tensor") for line in verbose[1:])
    assert "max abs error" in verbose[1] and "rel L2" in verbose[1]
    assert run("-q", "-v", str(source), out).returncode == 2


def test_nothing_to_convert_says_why_and_copies_the_bytes(tmp_path: Path) -> None:
    for name, why in [("small_cnn.tf_fp16.tflite", "10 constants are float16 already"),
                      ("int8_full.int8.tflite", "no float32 constant")]:
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
