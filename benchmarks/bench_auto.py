"""The tolerance search (--auto): LiteRT runs, time and bytes kept, against baselines measured in the same run.

    python benchmarks/bench_auto.py [--sizes 400,800,1600,3200,20000] [--skip-exhaustive]

Models (tests/tflite_builder.filterbank_model): two nearly equal "filter banks"
whose difference is the signal (their float16 rounding is amplified), then
dense layers (a weight and a bias each); two calibration samples.

1. Against the exhaustive search of earlier versions (each constant's harm
   measured alone: 2N + ceil(log2 N) + 2 runs), on 152 constants: runs, time and
   bytes kept float32. Target: at most 40 runs for 150+ constants, and no more
   bytes kept than the exhaustive search.
2. Linear in the model: ``tflite-fp16 --auto`` end to end for 400 to 3,200 and
   20,000 constants (banks last), against ``tflite-fp16 --verify`` (one
   conversion, one verification) of the same model. A candidate is built and
   run in time linear in the model; the runs stay bounded; so the whole search
   is linear (a line fits: R^2 printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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

from tflite_fp16.conversion.edit import apply_plan  # noqa: E402
from tflite_fp16.conversion.plan import make_plan  # noqa: E402
from tflite_fp16.format.reader import read_model  # noqa: E402
from tflite_fp16.format.writer import serialize  # noqa: E402
from tflite_fp16.options import Options  # noqa: E402
from tflite_fp16.pipeline import float16_casts  # noqa: E402
from tflite_fp16.tools.auto import run_bound  # noqa: E402
from tflite_fp16.verification import Verifier  # noqa: E402

TOLERANCE = 1e-3


def exhaustive(source: Path, calibration: Path) -> tuple[int, int, float]:
    """The search of earlier versions: (runs, bytes kept float32, seconds)."""
    start = time.perf_counter()
    model = read_model(source)
    plan = make_plan(model, Options())
    casts = float16_casts(model, plan)
    for cast in casts.values():
        cast.pinned = True
    conversions = plan.conversions
    runs = 0
    with Verifier(source, calibration, probes=True, tolerance=TOLERANCE) as verifier:

        def passes(kept: set[int]) -> tuple[bool, float]:
            nonlocal runs
            runs += 1
            subset = tuple(c for c in conversions if c.buffer not in kept)
            content, _ = serialize(apply_plan(model, dataclasses.replace(plan, conversions=subset), casts))
            report = verifier.check(content)
            worst = report.worst
            error = math.inf if worst is not None and worst.new_nonfinite else report.worst_rel_l2_error
            return report.passed, error

        if passes(set())[0]:
            return runs, 0, time.perf_counter() - start
        passes({c.buffer for c in conversions})
        alone = {c.buffer: passes({d.buffer for d in conversions if d is not c})[1] for c in conversions}
        order = sorted(conversions, key=lambda c: (-alone[c.buffer] / (2 * c.elements), c.elements))
        low, high = 0, len(order)
        while high - low > 1:
            middle = (low + high) // 2
            if passes({c.buffer for c in order[:middle]})[0]:
                high = middle
            else:
                low = middle
        kept = list(order[:high])
        for candidate in sorted(kept, key=lambda c: alone[c.buffer]):
            rest = [c for c in kept if c is not candidate]
            if passes({c.buffer for c in rest})[0]:
                kept = rest
    return runs, sum(2 * c.elements for c in kept), time.perf_counter() - start


def timed(command: list[str], allowed: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    status = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if status not in allowed:
        raise RuntimeError(f"{' '.join(command)}: exit status {status}")
    return time.perf_counter() - start


def model(work: Path, constants: int, banks_last: bool = False) -> tuple[Path, Path]:
    source, calibration = work / f"model{constants}.tflite", work / "calibration.npz"
    layers = (constants - 2) // 2
    built = tb.chain_then_filterbank_model(layers) if banks_last else tb.filterbank_model(dense_layers=layers)
    source.write_bytes(tb.build(built))
    signal = 1000 * np.random.default_rng(1).standard_normal((2, 1, 16))  # loud: the banks dominate the biases
    np.savez(calibration, signal=signal.astype(np.float32))
    return source, calibration


def auto(source: Path, calibration: Path, work: Path) -> tuple[dict, float]:  # type: ignore[type-arg]
    report = work / "report.json"
    seconds = timed(
        [
            CLI,
            "--auto",
            "--tolerance",
            str(TOLERANCE),
            "--inputs",
            str(calibration),
            "--json",
            str(report),
            "-q",
            str(source),
            str(work / "out.tflite"),
        ]
    )
    return json.loads(report.read_text()), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="400,800,1600,3200,20000")
    parser.add_argument("--skip-exhaustive", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tflite-fp16-auto-"))
    failures = []

    source, calibration = model(work, 152)
    data, seconds = auto(source, calibration, work)
    search = data["auto"]
    kept = sorted(t["name"] for k in search["kept"] for t in k["tensors"])
    print(
        f"152 constants ({source.stat().st_size:,} bytes), 2 calibration samples + 3 probes, tolerance {TOLERANCE:g}:"
    )
    print(
        f"  --auto: {search['runs']} LiteRT runs (bound {run_bound(search['candidates'])}), {seconds:.2f} s end to "
        f"end, kept {len(kept)} tensors ({search['bytes_kept_float32']:,} bytes): {', '.join(kept[:6])}"
    )
    if search["runs"] > 40 or not data["verify"]["passed"]:
        failures.append("runs or verification on 152 constants")
    if not args.skip_exhaustive:
        runs, kept_bytes, old_seconds = exhaustive(source, calibration)
        print(
            f"  exhaustive search of earlier versions: {runs} runs, {old_seconds:.2f} s (in process), kept "
            f"{kept_bytes:,} bytes"
        )
        print(
            f"  ratio: runs {search['runs'] / runs:.2f}, bytes kept {search['bytes_kept_float32'] / max(1, kept_bytes):.2f} "
            f"(target <= 1.00)"
        )
        if search["bytes_kept_float32"] > kept_bytes:
            failures.append("more bytes kept than the exhaustive search")

    print()
    print("time against the number of constants (--auto end to end vs --verify of the same model):")
    print("  constants  runs (bound)  --verify s  --auto s  ratio  auto us/constant")
    points = []
    for size in (int(s) for s in args.sizes.split(",")):
        source, calibration = model(work, size, banks_last=True)
        # The banks fail the verification (exit 3): the baseline is the conversion and one verification.
        baseline = timed(
            [CLI, "--verify", "--inputs", str(calibration), "-q", str(source), str(work / "v.tflite")], allowed=(0, 3)
        )
        data, seconds = auto(source, calibration, work)
        search = data["auto"]
        points.append((size, seconds))
        print(
            f"  {size:>9,}  {search['runs']:>4} ({run_bound(search['candidates']):>3})  {baseline:>10.2f}  "
            f"{seconds:>8.2f}  {seconds / baseline:>5.1f}  {1e6 * seconds / size:>16.0f}"
        )
        if search["runs"] > run_bound(search["candidates"]):
            failures.append(f"runs beyond the bound at {size}")
    if len(points) >= 3:
        x = np.array([p[0] for p in points], float)
        y = np.array([p[1] for p in points], float)
        slope, intercept = np.polyfit(x, y, 1)
        r2 = 1 - float(np.sum((y - (slope * x + intercept)) ** 2) / np.sum((y - y.mean()) ** 2))
        print(f"  fit: {intercept:.2f} s + {1e6 * slope:.0f} us x constants, R^2 = {r2:.4f} (linear: R^2 >= 0.99)")
        if r2 < 0.99:
            failures.append("time not linear in the constants")
    print()
    print("all targets hold" if not failures else f"targets missed: {', '.join(failures)}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
