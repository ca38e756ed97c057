"""The tolerance search on a model of 150+ constants: time and LiteRT runs.

    python benchmarks/bench_auto.py [--layers 75] [--repeats 3]

The model (tests/tflite_builder.filterbank_model): two nearly equal "filter
banks" whose difference is the signal (their float16 rounding is amplified),
then ``--layers`` dense layers (a weight and a bias each): 2 + 2 x 75 = 152
constants. Two calibration samples. Runs ``tflite-fp16 --auto --tolerance 1e-3
--inputs calibration.npz`` end to end, in a fresh process each time, and prints
the median time (target: well under a minute), the LiteRT runs against the
documented bound 2N + ceil(log2 N) + 2, and what the search kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import tflite_builder as tb  # noqa: E402
from common import CLI  # noqa: E402

from tflite_fp16.tools.auto import run_bound  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=75)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tflite-fp16-auto-"))
    source, out, calibration, report = (
        work / "model.tflite",
        work / "out.tflite",
        work / "calibration.npz",
        work / "report.json",
    )
    source.write_bytes(tb.build(tb.filterbank_model(dense_layers=args.layers)))
    np.savez(calibration, signal=np.random.default_rng(1).standard_normal((2, 1, 16)).astype(np.float32))
    constants = 2 + 2 * args.layers
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        subprocess.run(
            [
                CLI,
                "--auto",
                "--tolerance",
                "1e-3",
                "--inputs",
                str(calibration),
                "--json",
                str(report),
                "-q",
                str(source),
                str(out),
            ],
            check=True,
        )
        times.append(time.perf_counter() - start)
    data = json.loads(report.read_text())
    search = data["auto"]
    kept = sorted(t["name"] for k in search["kept"] for t in k["tensors"])
    seconds = statistics.median(times)
    print(f"model: {constants} float32 constants ({source.stat().st_size:,} bytes), 2 calibration samples + 3 probes")
    print(f"  search and verified conversion: {seconds:.2f} s (median of {args.repeats}; target: well under 60 s)")
    print(
        f"  LiteRT runs: {search['runs']} (bound 2N + ceil(log2 N) + 2 = {run_bound(search['candidates'])} for N = {search['candidates']})"
    )
    print(
        f"  kept float32: {len(kept)} tensors ({search['bytes_kept_float32']:,} bytes): {', '.join(kept[:8])}{' ...' if len(kept) > 8 else ''}"
    )
    print(
        f"  converted: {len(data['converted'])} tensors; final worst relative L2 error {data['verify']['worst_rel_l2_error']:.3g}"
    )
    ok = (
        seconds < 30
        and search["runs"] <= run_bound(search["candidates"])
        and {"bank/a", "bank/b"} <= set(kept)
        and data["verify"]["passed"]
    )
    print("all checks passed" if ok else "CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
