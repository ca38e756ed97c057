"""The tflite-fp16 command: one line on success, one line and a non-zero exit on error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


def run(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True)


def test_console_script_is_installed() -> None:
    assert shutil.which("tflite-fp16") or Path(sys.executable).with_name("tflite-fp16").exists()


def test_success_prints_one_summary_line(tmp_path: Path) -> None:
    result = run(str(DATA / "small_cnn.fp32.tflite"), str(tmp_path / "out.tflite"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("10 tensors converted to float16; 20,520 -> ")
    assert (tmp_path / "out.tflite").stat().st_size < 20520


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    result = run("--dry-run", "-v", str(DATA / "control_flow.fp32.tflite"), str(tmp_path / "out.tflite"))
    assert result.returncode == 0
    assert result.stdout.startswith("7 tensors would be converted to float16 (dry run, nothing written)")
    assert result.stdout.count("  would convert subgraph") == 7
    assert not (tmp_path / "out.tflite").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"not a model at all, just some text", "is a text file, not a TFLite model"),
        (None, "no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    source = tmp_path / "in.tflite"
    if content is not None:
        source.write_bytes(content)
    result = run(str(source), str(tmp_path / "out.tflite"))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out.tflite").exists()


def test_unwritable_output_exits_1(tmp_path: Path) -> None:
    result = run(str(DATA / "tiny_mlp.fp32.tflite"), str(tmp_path / "no" / "such" / "dir" / "out.tflite"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_missing_output_argument_is_a_usage_error() -> None:
    result = run(str(DATA / "tiny_mlp.fp32.tflite"))
    assert result.returncode == 2 and "give IN OUT" in result.stderr


def test_unexpected_error_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:  # type: ignore[type-arg]
    from tflite_fp16 import cli
    from tflite_fp16.format import writer

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(writer, "_layout_for", broken)
    status = cli.main([str(DATA / "tiny_mlp.fp32.tflite"), str(tmp_path / "out.tflite")])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    assert captured.err.strip().splitlines() == [
        "tflite-fp16: internal error: RuntimeError: simulated bug (please report it; -v shows where)"
    ]
    assert list(tmp_path.iterdir()) == []
