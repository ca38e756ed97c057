"""Timing helpers shared by the benchmarks: fresh processes, alternating runs, medians."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

HERE = Path(__file__).resolve().parent
CLI = shutil.which("tflite-fp16") or str(Path(sys.executable).with_name("tflite-fp16"))


CPU_TIMES: Dict[str, List[float]] = {}  # command name -> CPU seconds (user + system) of each run, from compare()


def run_once(command: Sequence[str]) -> Tuple[float, int]:
    """Wall time (s) and peak resident memory (bytes) of one fresh process (its CPU time in ``run_once.cpu``)."""
    start = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    run_once.cpu = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
    return elapsed, usage.ru_maxrss * 1024


def compare(commands: Dict[str, List[str]], repeats: int, before_each=None) -> Dict[str, Tuple[float, int]]:  # type: ignore[no-untyped-def]
    """Run each command ``repeats`` times, alternating; median wall time and median peak memory of each
    (the CPU times of these runs replace ``CPU_TIMES[name]``)."""
    for name in commands:
        CPU_TIMES[name] = []
    times: Dict[str, List[float]] = {name: [] for name in commands}
    memory: Dict[str, List[int]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            if before_each is not None:
                before_each(name)
            elapsed, peak = run_once(command)
            times[name].append(elapsed)
            memory[name].append(peak)
            CPU_TIMES.setdefault(name, []).append(run_once.cpu)  # type: ignore[attr-defined]
    return {name: (statistics.median(times[name]), int(statistics.median(memory[name]))) for name in commands}


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def remove(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
