"""--auto: the tolerance search keeps exactly the constants whose float16 rounding the model
amplifies, converts the rest, and the result passes on held-out inputs."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
import tflite_builder as tb

from tflite_fp16 import Options, VerificationError, rewrite, rewrite_bytes, verify
from tflite_fp16.conversion.plan import matches
from tflite_fp16.tools.auto import keep_pattern, run_bound
from tflite_fp16.verification import PROBES

DATA = Path(__file__).resolve().parent / "data"


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def,type-arg]
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True, **kwargs)


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    path = tmp_path / "bank.tflite"
    path.write_bytes(tb.build(tb.filterbank_model()))
    return path


def signals(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 16)).astype(np.float32)


def test_search_keeps_the_amplified_constants_and_passes_held_out_inputs(bank: Path, tmp_path: Path) -> None:
    out, calibration = tmp_path / "out.tflite", tmp_path / "calibration.npz"
    np.savez(calibration, signal=signals(2, seed=1))
    # Without the search, the default conversion is far off.
    rewrite(bank, tmp_path / "plain.tflite")
    assert verify(bank, tmp_path / "plain.tflite", inputs=calibration).worst_rel_l2_error > 0.01
    report = rewrite(bank, out, auto=True, tolerance=1e-3, inputs=calibration)
    assert {k.tensor.name: k.reason for k in report.kept} == {"bank/a": "tolerance", "bank/b": "tolerance"}
    assert {c.name for c in report.converted} == {"dense/weights", "dense/bias"}
    search = report.search
    assert {t.name for c in search.chosen for t in c.tensors} == {"bank/a", "bank/b"}
    assert all(c.error_alone > 1e-3 for c in search.chosen) and search.bytes_kept == 2 * 2 * 128
    assert search.runs <= run_bound(search.candidates) and search.candidates == 4
    # The final file was verified on the same samples as the search: the calibration and the probes.
    assert report.verification.passed and report.verification.samples == ("inputs[0]", "inputs[1]") + PROBES
    held_out = verify(bank, out, inputs={"signal": signals(5, seed=99)}, tolerance=1e-3)
    assert held_out.passed and len(held_out.samples) == 5
    data = report.to_dict()["auto"]
    assert data["runs"] == search.runs and {t["name"] for k in data["kept"] for t in k["tensors"]} == {
        "bank/a",
        "bank/b",
    }
    assert data["bytes_kept_float32"] == 512 and data["kept"][0]["rel_l2_error_alone"] > 1e-3


def test_nothing_to_search_when_the_default_passes(tmp_path: Path) -> None:
    report = rewrite(DATA / "small_cnn.fp32.tflite", tmp_path / "out.tflite", auto=True, tolerance=1e-2)
    assert report.search.runs == 1 and report.search.chosen == () and report.tensors_converted == 10
    assert report.search.summary().startswith("auto: the conversion meets tolerance 0.01 as it is")


def test_runs_stay_within_the_documented_bound(tmp_path: Path) -> None:
    path = tmp_path / "deep.tflite"
    path.write_bytes(tb.build(tb.filterbank_model(dense_layers=12)))
    report = rewrite(path, tmp_path / "out.tflite", auto=True, tolerance=1e-3)
    search = report.search
    assert search.candidates == 26
    assert search.runs <= run_bound(26) == 2 * 26 + 5 + 2
    assert {"bank/a", "bank/b"} <= {t.name for c in search.chosen for t in c.tensors}
    assert report.verification.passed


def test_save_keep_then_keep_from_converts_the_same_without_litert(bank: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "calibration.npz", signal=signals(2, seed=1))
    keep_file, searched, replayed = tmp_path / "keep.txt", tmp_path / "searched.tflite", tmp_path / "replayed.tflite"
    result = run(
        "--auto",
        "--tolerance",
        "1e-3",
        "--inputs",
        str(tmp_path / "calibration.npz"),
        "--save-keep",
        str(keep_file),
        str(bank),
        str(searched),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "no progress output when stderr is not a terminal"
    assert "(tolerance)" in result.stdout and "auto: kept 2 tensors float32 (512 bytes)" in result.stdout
    lines = [line for line in keep_file.read_text().splitlines() if not line.startswith("#")]
    assert sorted(lines) == ["bank/a", "bank/b"]
    code = (
        "import sys; sys.modules['ai_edge_litert'] = None\n"
        "from tflite_fp16.cli import main\n"
        f"sys.exit(main(['--keep-from', {str(keep_file)!r}, {str(bank)!r}, {str(replayed)!r}]))"
    )
    replay = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert replay.returncode == 0, replay.stderr
    assert replayed.read_bytes() == searched.read_bytes()
    assert Options(keep_from=str(keep_file)).keep == ("bank/a", "bank/b")
    converted, _ = rewrite_bytes(bank.read_bytes(), keep_from=str(keep_file))
    assert converted == searched.read_bytes()


def test_unreachable_tolerance_exits_3_and_says_so(tmp_path: Path) -> None:
    source, out = tmp_path / "random.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(tb.random_model()))
    result = run("--auto", "--tolerance", "1e-3", "--json", str(tmp_path / "r.json"), str(source), str(out))
    assert result.returncode == 3
    assert "cannot be met even with every constant float32" in result.stderr.splitlines()[0]
    assert not out.exists() and json.loads((tmp_path / "r.json").read_text())["error"]["exit_status"] == 3
    with pytest.raises(VerificationError, match="not deterministic"):
        rewrite(source, out, auto=True, tolerance=1e-3)


def test_progress_on_a_terminal(bank: Path, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    process = subprocess.Popen(
        [sys.executable, "-m", "tflite_fp16", "--auto", "--tolerance", "1e-3", str(bank), str(tmp_path / "out.tflite")],
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=120) == 0
    os.close(leader)
    assert (
        b"tolerance search" in shown and b"/4 [" in shown
    )  # tensor i of 4 (refreshed every 0.1 s), cleared at the end


def test_keep_patterns_name_exactly_one_tensor() -> None:
    for name in ["dense/weights", "odd[0]*?name", "a;b", "with\nbreak"]:
        pattern = keep_pattern(name)
        assert matches(name, pattern)
        assert not matches(name + "x", pattern) and not matches("x" + name, pattern)
    assert not matches("oddX0]*?name", keep_pattern("odd[0]*?name"))


def test_search_options_are_checked(bank: Path, tmp_path: Path) -> None:
    assert run("--save-keep", str(tmp_path / "k.txt"), str(bank), str(tmp_path / "o.tflite")).returncode == 2
    result = run("--keep-from", str(tmp_path / "missing.txt"), str(bank), str(tmp_path / "o.tflite"))
    assert result.returncode == 2 and "no such file" in result.stderr
