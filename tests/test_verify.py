"""--verify and verify(): both models run in LiteRT on probes or on the user's arrays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tflite_builder as tb

from tflite_fp16 import InvalidInputsError, VerificationError, rewrite, rewrite_bytes, verify
from tflite_fp16.options import DEFAULT_TOLERANCE
from tflite_fp16.verification import PROBES, compare_outputs

DATA = Path(__file__).resolve().parent / "data"
FP32_MODELS = sorted(p.name.split(".")[0] for p in DATA.glob("*.fp32.tflite"))


def run(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True)


@pytest.mark.parametrize("name", FP32_MODELS)
def test_default_tolerance_passes_tensorflows_own_conversions_with_room(name: str) -> None:
    report = verify(DATA / f"{name}.fp32.tflite", DATA / f"{name}.tf_fp16.tflite")
    assert report.samples == PROBES
    if name == "fp16_range":  # built to fail: constants beyond float16's range
        assert not report.passed and report.worst_rel_l2_error > 0.1
    else:
        assert report.passed and report.worst_rel_l2_error < DEFAULT_TOLERANCE / 3, report.summary()


def test_every_signature_every_output_every_probe() -> None:
    report = verify(DATA / "two_signatures.fp32.tflite", DATA / "two_signatures.tf_fp16.tflite")
    assert {(c.signature, c.output) for c in report.comparisons} == {("decode", "recon"), ("encode", "code")}
    assert len(report.comparisons) == 2 * len(PROBES)
    by_probe = {c.sample for c in report.comparisons}
    assert by_probe == set(PROBES)


def test_model_without_signatures_runs_its_main_subgraph() -> None:
    report = verify(DATA / "control_flow.fp32.tflite", DATA / "control_flow.tf_fp16.tflite")
    assert report.passed and {c.signature for c in report.comparisons} == {""}
    arrays = {"x": np.ones((1, 8), np.float32), "n": np.array(3, np.int32)}
    report = verify(DATA / "control_flow.fp32.tflite", DATA / "control_flow.tf_fp16.tflite", inputs=arrays)
    assert report.samples == ("inputs",) and report.passed


def test_npz_samples_and_dynamic_dimensions_from_the_arrays(tmp_path: Path) -> None:
    source, out = DATA / "dynamic_batch.fp32.tflite", tmp_path / "out.tflite"
    rewrite(source, out)
    probes = verify(source, out)
    assert any("dynamic dimensions" in note and "[1, 12, 12, 2]" in note for note in probes.notes)  # the batch: 1
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((3, 4, 12, 12, 2)).astype(np.float32)  # 3 samples of batch 4
    npz = tmp_path / "calibration.npz"
    np.savez(npz, keras_tensor=batch)
    report = verify(source, out, inputs=npz)
    assert report.samples == ("inputs[0]", "inputs[1]", "inputs[2]") and report.passed
    assert all(c.elements == 4 * 10 for c in report.comparisons)  # batch 4 of 10 classes: the arrays set the dimension
    both = verify(source, out, inputs=npz, probes=True)
    assert both.samples == ("inputs[0]", "inputs[1]", "inputs[2]") + PROBES


def test_inputs_that_do_not_fit_are_refused_with_the_expected_names(tmp_path: Path) -> None:
    source = DATA / "tiny_mlp.fp32.tflite"
    with pytest.raises(InvalidInputsError, match="no array for 'keras_tensor'"):
        verify(source, source, inputs={"wrong": np.zeros((1, 16), np.float32)})
    with pytest.raises(InvalidInputsError, match="dimensions"):
        verify(source, source, inputs={"keras_tensor": np.zeros((2, 2, 2, 16), np.float32)})
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(InvalidInputsError, match=r"not a readable \.npz"):
        verify(source, source, inputs=bad)
    result = run("--verify", "--inputs", str(bad), str(source), str(tmp_path / "out.tflite"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.tflite").exists()


def test_cli_verify_passes_and_reports(tmp_path: Path) -> None:
    result = run("--verify", str(DATA / "small_cnn.fp32.tflite"), str(tmp_path / "out.tflite"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "LiteRT's native log lines must not leak"
    lines = result.stdout.splitlines()
    assert lines[0].startswith("10 tensors converted") and lines[1].startswith(
        "verify: passed (1 output x 3 probes for breakage"
    )


def test_cli_verify_failure_exits_3_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.tflite"
    result = run(
        "--verify",
        "--lossy",
        "convert",
        "--json",
        str(tmp_path / "r.json"),
        str(DATA / "fp16_range.fp32.tflite"),
        str(out),
    )
    assert result.returncode == 3
    assert (
        result.stderr.startswith("tflite-fp16: verify: FAILED") and "no output written" in result.stderr.splitlines()[0]
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["error"]["exit_status"] == 3 and data["verify"]["passed"] is False
    assert any(not o["passed"] for o in data["verify"]["outputs"])
    # The same with a loose tolerance passes (fp16_range gains no non-finite values) and writes the file.
    result = run("--verify", "--lossy", "convert", "--tolerance", "1e9", str(DATA / "fp16_range.fp32.tflite"), str(out))
    assert result.returncode == 0 and out.exists()


def test_new_nonfinite_values_fail_whatever_the_tolerance(tmp_path: Path) -> None:
    source, out = tmp_path / "frontend.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(tb.frontend_model()))
    with pytest.raises(VerificationError) as caught:
        rewrite(source, out, lossy="convert", verify=True, tolerance=1e9)
    assert sum(c.new_nonfinite for c in caught.value.report.comparisons) > 0 and not out.exists()
    report = rewrite(source, out, verify=True)  # the default keeps the clamp and the epsilon
    assert report.verification.passed and report.verification.worst_rel_l2_error <= 1e-3


def test_in_place_rewrite_that_fails_verification_leaves_the_input(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    original = tb.build(tb.frontend_model())
    path.write_bytes(original)
    result = run("--verify", "--lossy", "convert", str(path), str(path))
    assert result.returncode == 3 and path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_missing_litert_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['ai_edge_litert'] = None\n"
        "from tflite_fp16.cli import main\n"
        f"sys.exit(main(['--verify', {str(DATA / 'tiny_mlp.fp32.tflite')!r}, {str(tmp_path / 'out.tflite')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tflite-fp16: error: verification needs LiteRT, which is not installed: pip install 'tflite-fp16[verify]'"
    ]
    assert not (tmp_path / "out.tflite").exists()


def test_importing_the_package_does_not_load_litert() -> None:
    code = "import sys, tflite_fp16, tflite_fp16.cli; print(any(m.startswith('ai_edge_litert') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_rewrite_bytes_matches_the_file_rewrite_and_verifies(tmp_path: Path) -> None:
    source = DATA / "small_cnn.fp32.tflite"
    data = source.read_bytes()
    converted, report = rewrite_bytes(data, verify=True)
    file_report = rewrite(source, tmp_path / "out.tflite")
    assert converted == (tmp_path / "out.tflite").read_bytes()
    assert report.size_before == len(data) and report.size_after == len(converted) and report.layout == "normal"
    assert report.converted == file_report.converted and report.verification.passed
    same, unchanged = rewrite_bytes((DATA / "int8_full.int8.tflite").read_bytes())
    assert same == (DATA / "int8_full.int8.tflite").read_bytes() and unchanged.unchanged


def test_compare_outputs_edge_cases() -> None:
    same = compare_outputs(np.zeros(3), np.zeros(3))
    assert (same.max_abs_error, same.rel_l2_error, same.cosine, same.new_nonfinite) == (0.0, 0.0, 1.0, 0)
    infinite = compare_outputs(np.array([1.0, -np.inf]), np.array([1.0, -np.inf]))
    assert (infinite.max_abs_error, infinite.rel_l2_error, infinite.compared) == (0.0, 0.0, 1)
    assert compare_outputs(np.array([1.0, 2.0]), np.array([1.0, np.nan])).new_nonfinite == 1
    assert compare_outputs(np.zeros(2), np.array([0.0, 1e-3])).rel_l2_error == float("inf")
    assert compare_outputs(np.array([3.0, 4.0]), np.array([3.0, 4.5])).rel_l2_error == pytest.approx(0.1)
    assert compare_outputs(np.array([np.nan, np.inf]), np.array([1.0, 2.0])).compared == 0
    rows = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.4], [0.3, 0.7]])
    flipped = rows.copy()
    flipped[2] = [0.4, 0.5]
    assert compare_outputs(rows, flipped).top1_mismatch == pytest.approx(0.25)
