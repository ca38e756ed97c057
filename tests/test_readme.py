"""The README's examples are true: each quoted command prints what the README says it prints."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def quoted_commands() -> list[tuple[str, list[str]]]:
    """Indented blocks starting with '$ tflite-fp16 ...': the command and the lines shown after it."""
    found = []
    for block in re.findall(r"(?:^    .*\n)+", README, flags=re.M):
        lines = [line[4:] for line in block.splitlines()]
        if lines and lines[0].startswith("$ tflite-fp16 "):
            found.append((lines[0][2:], lines[1:]))
    return found


def matches(shown: str, actual: str) -> bool:
    """A shown line ending in '...' stands for any line it begins."""
    if shown.endswith("..."):
        return actual.startswith(shown[:-3].rstrip())
    return actual == shown


def test_every_quoted_command_prints_what_the_readme_shows(tmp_path: Path) -> None:
    commands = quoted_commands()
    assert len(commands) >= 2
    for command, shown in commands:
        args = shlex.split(command)[1:]
        args = [str(tmp_path / a) if a.endswith(("out.tflite", "_fp16")) else a for a in args]
        result = subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, (command, result.stderr)
        actual = result.stdout.splitlines()
        assert len(actual) == len(shown), (command, actual)
        for s, a in zip(shown, actual):
            assert matches(s, a), (command, s, a)


def test_quick_start_line(tmp_path: Path) -> None:
    shown = re.search(r"prints\n\n    (.*)\n", README).group(1)  # type: ignore[union-attr]
    result = subprocess.run(
        [sys.executable, "-m", "tflite_fp16", "examples/small_cnn.tflite", str(tmp_path / "out.tflite")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.stdout.splitlines() == [shown]


def test_examples_are_what_their_script_writes(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import tflite_builder as tb

    assert (ROOT / "examples" / "audio_frontend.tflite").read_bytes() == tb.build(tb.frontend_model())
    assert (ROOT / "examples" / "filterbank.tflite").read_bytes() == tb.build(tb.filterbank_model())
    with np.load(ROOT / "examples" / "filterbank_calibration.npz") as calibration:
        assert calibration["signal"].shape == (2, 1, 16)
    assert (ROOT / "examples" / "small_cnn.tflite").read_bytes() == (
        ROOT / "tests" / "data" / "small_cnn.fp32.tflite"
    ).read_bytes()
    with np.load(ROOT / "examples" / "audio_frontend_inputs.npz") as inputs:
        audio = inputs["audio"]
    assert audio.shape == (3, 1, 8) and not audio[0].any() and np.abs(audio[1]).max() > 10000
