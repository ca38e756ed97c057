"""LiteRT's limits at full size: a model whose rewrite would pass 1,000,000 tables.

    python benchmarks/bench_limits.py      # about a minute

A model of 200,000 small float32 constants (100,000 FULLY_CONNECTED ops) has
about 600,000 tables: LiteRT loads it. Converting every constant adds a
DEQUANTIZE operator and a tensor per constant, about 1,200,000 tables, which
LiteRT's verifier refuses. tflite-fp16 must refuse that output before writing
anything (exit 1, no file), and convert the model when enough constants stay
float32 (``--min-elements 5`` keeps the 4-value biases).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import models
from common import CLI


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tflite-fp16-limits-"))
    source, out = workdir / "many.tflite", workdir / "out.tflite"
    size = models.many_small(source, 200_000)
    print(f"model: 200,000 constants, 100,000 operators, {size / 1e6:.1f} MB")
    loads = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from ai_edge_litert.interpreter import Interpreter; Interpreter(model_path={str(source)!r})",
        ],
        capture_output=True,
        text=True,
    )
    print(f"  LiteRT loads the input: {loads.returncode == 0}")
    start = time.perf_counter()
    refused = subprocess.run([CLI, str(source), str(out)], capture_output=True, text=True)
    print(
        f"  tflite-fp16 IN OUT: exit {refused.returncode} in {time.perf_counter() - start:.1f} s: {refused.stderr.strip()}"
    )
    left = [p.name for p in workdir.iterdir() if p.name != "many.tflite"]
    print(f"  files left: {left}")
    start = time.perf_counter()
    kept = subprocess.run([CLI, "--min-elements", "5", str(source), str(out)], capture_output=True, text=True)
    print(
        f"  tflite-fp16 --min-elements 5 IN OUT: exit {kept.returncode} in {time.perf_counter() - start:.1f} s: {kept.stdout.strip()}"
    )
    loads_out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from ai_edge_litert.interpreter import Interpreter; Interpreter(model_path={str(out)!r})",
        ],
        capture_output=True,
        text=True,
    )
    print(f"  LiteRT loads that output: {loads_out.returncode == 0}")
    ok = (
        loads.returncode == 0
        and refused.returncode == 1
        and "tables" in refused.stderr
        and not left
        and kept.returncode == 0
        and loads_out.returncode == 0
    )
    for path in workdir.iterdir():
        os.unlink(path)
    os.rmdir(workdir)
    print("all checks passed" if ok else "CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
