"""--auto: the tolerance search keeps exactly the constants whose float16 rounding the model
amplifies, converts the rest, writes exactly the model it accepted, in a bounded number of runs,
and the result passes on held-out inputs."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tflite_builder as tb

from tflite_fp16 import Options, RewriteError, VerificationError, rewrite, rewrite_bytes, verify
from tflite_fp16.keepfile import read_keep_file
from tflite_fp16.tools import auto
from tflite_fp16.tools.auto import run_bound
from tflite_fp16.verification import PROBES

DATA = Path(__file__).resolve().parent / "data"


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True, **kwargs)


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    path = tmp_path / "bank.tflite"
    path.write_bytes(tb.build(tb.filterbank_model()))
    return path


def signals(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 16)).astype(np.float32)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_search_keeps_the_amplified_constants_and_passes_held_out_inputs(bank: Path, tmp_path: Path) -> None:
    out, calibration = tmp_path / "out.tflite", tmp_path / "calibration.npz"
    np.savez(calibration, signal=signals(2, seed=1))
    # Without the search, the default conversion is far off.
    rewrite(bank, tmp_path / "plain.tflite")
    assert verify(bank, tmp_path / "plain.tflite", inputs=calibration).worst_rel_l2_error > 0.01
    report = rewrite(bank, out, auto=True, tolerance=1e-3, inputs=calibration)
    assert {k.name: k.reason for k in report.kept} == {"bank/a": "tolerance", "bank/b": "tolerance"}
    assert {c.name for c in report.converted} == {"dense/weights", "dense/bias"}
    search = report.search
    assert {t.name for c in search.chosen for t in c.tensors} == {"bank/a", "bank/b"}
    assert all(c.harm > 1e-3 for c in search.chosen) and search.bytes_kept == 2 * 2 * 128
    assert search.runs <= run_bound(search.candidates) and search.candidates == 4
    # The file written is the one the search accepted, and its verification is the search's:
    # the calibration and the probes.
    assert sha256(out) == search.sha256 and report.verification is search.verification
    assert report.verification.passed and report.verification.samples == ("inputs[0]", "inputs[1]", *PROBES)
    held_out = verify(bank, out, inputs={"signal": signals(5, seed=99)}, tolerance=1e-3)
    assert held_out.passed and len(held_out.samples) == 5
    data = report.to_dict()["auto"]
    assert data["runs"] == search.runs and {t["name"] for k in data["kept"] for t in k["tensors"]} == {
        "bank/a",
        "bank/b",
    }
    assert data["bytes_kept_float32"] == 512 and data["kept"][0]["harm"] > 1e-3
    assert data["keep_tensors"] == [[0, 1], [0, 2]] and data["judged_on"] == "inputs"
    assert len(data["curve"]) == search.runs - 2  # every model run but the layer comparison's pair
    assert {(p["bytes_kept_float32"], p["passed"]) for p in data["curve"]} >= {(0, False), (656, True), (512, True)}


def test_nothing_to_search_when_the_default_passes(tmp_path: Path) -> None:
    report = rewrite(DATA / "small_cnn.fp32.tflite", tmp_path / "out.tflite", auto=True, tolerance=1e-2)
    assert report.search.runs == 1 and report.search.chosen == () and report.tensors_converted == 10
    assert report.search.summary().startswith(
        "auto: the conversion meets tolerance 0.01 (rel_l2) on the probes as it is"
    )


def test_runs_stay_within_the_documented_bound_on_150_constants(tmp_path: Path) -> None:
    path = tmp_path / "deep.tflite"
    path.write_bytes(tb.build(tb.filterbank_model(dense_layers=76)))
    out = tmp_path / "out.tflite"
    report = rewrite(path, out, auto=True, tolerance=1e-3)
    search = report.search
    assert search.candidates == 154
    assert search.runs <= run_bound(154) == 40
    assert {t.name for c in search.chosen for t in c.tensors} == {"bank/a", "bank/b"}
    assert report.verification.passed and sha256(out) == search.sha256


def test_the_written_file_is_the_searched_one_when_a_name_is_part_of_a_fused_name(tmp_path: Path) -> None:
    model = tb.filterbank_model()
    tensors = model.subgraphs[0].tensors
    tensors[6].name = "bank/a;dense/weights"  # a fused name that has the searched tensor's name as a part
    source, out = tmp_path / "fused.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(model))
    assert {k.name for k in rewrite(source, None, keep=["bank/a"]).kept} == {"bank/a", "bank/a;dense/weights"}
    report = rewrite(source, out, auto=True, tolerance=1e-3)
    assert {k.name for k in report.kept} == {"bank/a", "bank/b"}
    assert "bank/a;dense/weights" in {c.name for c in report.converted}
    assert sha256(out) == report.search.sha256 and report.verification.passed


def test_the_final_conversion_must_reproduce_the_searched_bytes(bank: Path, tmp_path: Path) -> None:
    result = auto.search(str(bank), Options(auto=True, tolerance=1e-3))
    other = tmp_path / "other.tflite"
    rewrite(bank, other)  # not the accepted model
    with pytest.raises(RewriteError, match="differs from the one the tolerance search accepted"):
        result.accept(str(other))
    replayed = tmp_path / "replayed.tflite"
    rewrite(bank, replayed, keep_tensors=result.keep_tensors)  # exactly the chosen tensors kept: the same bytes
    assert result.accept(str(replayed)) is result.verification and result.accept(replayed.read_bytes()) is not None


def test_user_inputs_decide_and_the_probes_only_guard_breakage(tmp_path: Path) -> None:
    source = tmp_path / "map.tflite"
    source.write_bytes(tb.build(tb.sigmoid_map_model()))
    # Without inputs the probes are all there is: the map's 2.6% error on N(0,1) makes the search keep.
    on_probes = rewrite(source, tmp_path / "probes.tflite", auto=True, tolerance=1e-2).search
    assert on_probes.judged_on == "probes" and on_probes.chosen
    # The model's real inputs are small: there the conversion meets the tolerance as it is.
    images = (0.01 * np.random.default_rng(3).standard_normal((4, 1, 16))).astype(np.float32)
    report = rewrite(source, tmp_path / "inputs.tflite", auto=True, tolerance=1e-2, inputs={"image": images})
    assert report.search.judged_on == "inputs" and report.search.chosen == () and report.search.runs == 1
    assert report.tensors_converted == 3 and report.verification.passed
    assert {c.rule for c in report.verification.comparisons if c.kind == "probe"} == {"breakage"}


def test_a_tolerance_only_keeping_everything_meets_exits_3_and_says_so(tmp_path: Path) -> None:
    source, out = tmp_path / "bank.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(tb.filterbank_model(dense_layers=0)))
    result = run("--auto", "--tolerance", "1e-7", "--json", str(tmp_path / "r.json"), str(source), str(out))
    assert result.returncode == 3, result.stderr
    assert "is met only with every constant float32" in result.stderr.splitlines()[0]
    assert all(line.strip() not in ("tflite-fp16:", "") for line in result.stderr.splitlines())  # no empty hint
    assert "nothing to convert" not in result.stderr and not out.exists()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["error"]["exit_status"] == 3 and data["auto"]["share_kept"] == 1.0 and data["auto"]["curve"]


def test_unreachable_tolerance_exits_3_and_says_so(tmp_path: Path) -> None:
    source, out = tmp_path / "random.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(tb.random_model()))
    result = run("--auto", "--tolerance", "1e-3", "--json", str(tmp_path / "r.json"), str(source), str(out))
    assert result.returncode == 3
    assert "cannot be met even with every constant float32" in result.stderr.splitlines()[0]
    data = json.loads((tmp_path / "r.json").read_text())
    assert not out.exists() and data["error"]["exit_status"] == 3 and data["auto"] is not None
    with pytest.raises(VerificationError, match="not deterministic") as caught:
        rewrite(source, out, auto=True, tolerance=1e-3)
    assert caught.value.search is not None


def test_most_of_the_model_float32_is_said_with_a_tolerance_that_converts_more(bank: Path, tmp_path: Path) -> None:
    report = rewrite(bank, tmp_path / "out.tflite", auto=True, tolerance=1e-3)
    lines = report.search.summary().splitlines()
    assert report.search.share_kept > 0.5 and len(lines) == 2
    assert lines[1].startswith("auto: most of the model stays float32: the default conversion's worst error is")
    better = report.search.better_tolerance()
    assert better is not None and f"would keep only {better.bytes_kept:,} bytes float32" in lines[1]
    looser = rewrite(
        bank, tmp_path / "looser.tflite", auto=True, tolerance=float(lines[1].split("--tolerance ")[1].split()[0])
    )
    assert looser.search.bytes_kept <= better.bytes_kept


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
    assert "(tolerance)" in result.stdout and "auto: kept 2 tensors float32 (512 bytes" in result.stdout
    entries = read_keep_file(keep_file)
    assert [(e.kind, e.text, e.shape) for e in entries] == [("exact", "bank/a", (8, 16)), ("exact", "bank/b", (8, 16))]
    code = (
        "import sys; sys.modules['ai_edge_litert'] = None\n"
        "from tflite_fp16.cli import main\n"
        f"sys.exit(main(['--keep-from', {str(keep_file)!r}, {str(bank)!r}, {str(replayed)!r}]))"
    )
    replay = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert replay.returncode == 0 and replay.stderr == "", replay.stderr
    assert replayed.read_bytes() == searched.read_bytes()
    assert [e.text for e in Options(keep_from=str(keep_file)).keep_names] == ["bank/a", "bank/b"]
    converted, report = rewrite_bytes(bank.read_bytes(), keep_from=str(keep_file))
    assert converted == searched.read_bytes() and report.plan.kept_by_reason() == {"keep_name": 2}


def test_save_keep_is_written_when_the_final_step_fails(
    bank: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tflite_fp16 import pipeline

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "write_model", broken)
    keep_file = tmp_path / "keep.txt"
    with pytest.raises(OSError):
        rewrite(bank, tmp_path / "out.tflite", auto=True, tolerance=1e-3, save_keep=keep_file)
    assert {e.text for e in read_keep_file(keep_file)} == {"bank/a", "bank/b"}


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
    assert b"tolerance search" in shown and f"/{run_bound(4)} [".encode() in shown  # run i of at most 10


def test_progress_lines_off_a_terminal(
    bank: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(auto, "_LINE_SECONDS", 0.0)
    rewrite(bank, tmp_path / "out.tflite", auto=True, tolerance=1e-3, progress="lines")
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("tflite-fp16: auto: run ") for line in lines)
    assert f"of at most {run_bound(4)}" in lines[0]
    rewrite(bank, tmp_path / "out.tflite", auto=True, tolerance=1e-3, progress=True)
    assert capsys.readouterr().err == ""  # a bar only on a terminal


def test_search_options_are_checked(bank: Path, tmp_path: Path) -> None:
    assert run("--save-keep", str(tmp_path / "k.txt"), str(bank), str(tmp_path / "o.tflite")).returncode == 2
    result = run("--keep-from", str(tmp_path / "missing.txt"), str(bank), str(tmp_path / "o.tflite"))
    assert result.returncode == 2 and "no such file" in result.stderr
