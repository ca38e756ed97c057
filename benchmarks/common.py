"""Timing helpers shared by the benchmarks: fresh processes, alternating runs, medians."""

from __future__ import annotations

import compileall
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = shutil.which("tflite-fp16") or str(Path(sys.executable).with_name("tflite-fp16"))


def _byte_compile_the_package() -> None:
    """Compile tflite_fp16 to bytecode, as ``pip install`` does: an editable install under
    PYTHONDONTWRITEBYTECODE (set on this project's machines) would otherwise compile every
    module from source in every timed process, and time that instead of the tool."""
    spec = importlib.util.find_spec("tflite_fp16")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("tflite_fp16 is not installed: pip install -e . first")
    for location in spec.submodule_search_locations:
        compileall.compile_dir(location, quiet=1)


_byte_compile_the_package()


def run_once(command: Sequence[str]) -> tuple[float, int]:
    """Wall time (s) and peak resident memory (bytes) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss * 1024


def compare(commands: dict[str, list[str]], repeats: int, before_each=None) -> dict[str, tuple[float, int]]:  # type: ignore[no-untyped-def]
    """Run each command ``repeats`` times, alternating; median wall time and median peak memory of each."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    memory: dict[str, list[int]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            if before_each is not None:
                before_each(name)
            elapsed, peak = run_once(command)
            times[name].append(elapsed)
            memory[name].append(peak)
    return {name: (statistics.median(times[name]), int(statistics.median(memory[name]))) for name in commands}


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def remove(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


_MIN_CPU = """
import sys, time, gc
import tflite_fp16
source, target, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
best = float("inf")
for _ in range(repeats):
    gc.collect()
    start = time.process_time()
    tflite_fp16.rewrite(source, target)
    best = min(best, time.process_time() - start)
print(best)
"""


def least_cpu(source: Path, target: Path, repeats: int) -> float:
    """The least CPU time of ``repeats`` rewrites of ``source`` in one fresh process: short
    samples, of which a noisy machine spoils only some."""
    result = subprocess.run(
        [sys.executable, "-c", _MIN_CPU, str(source), str(target), str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip())
