"""Speed and memory of ``tflite-fp16 IN OUT`` against the bare NumPy baseline.

    python benchmarks/bench_rewrite.py [--repeats 5] [--workdir DIR]

Builds its own synthetic models, then runs the rewriter (the ``tflite-fp16``
command, end to end) and ``benchmarks/baseline.py`` (memory-map, find the
float32 constants with the ``tflite`` package, ``np.clip`` + ``astype``, write)
alternately, each in a fresh process, and prints medians and ratios:

* a ~400 MB model of large FULLY_CONNECTED weights: time <= 1.2x baseline,
  peak resident memory <= 1.25x the input file;
* models of 1,000 to 20,000 small constants (half as many operators): time
  <= 2x baseline at 20,000, and the time per constant roughly flat (linear);
  linearity is judged on the least CPU time of several rewrites in one process
  (a shared machine's neighbours only ever add time, and spoil some samples);
* models of 2,500 to 40,000 subgraphs (one constant each): the time per subgraph
  roughly flat (linear);
* ``import tflite_fp16`` and first use of its API <= 2x ``import numpy``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import models
from common import CLI, HERE, compare, least_cpu, mb, remove


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tflite-fp16-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    baseline = [sys.executable, str(HERE / "baseline.py")]
    failures = []

    def case(name: str, path: Path):  # type: ignore[no-untyped-def]
        ours_out, base_out = workdir / f"{name}.ours.tflite", workdir / f"{name}.baseline.bin"
        commands = {"baseline": baseline + [str(path), str(base_out)], "tflite-fp16": [CLI, str(path), str(ours_out)]}
        results = compare(commands, args.repeats, before_each=lambda _: remove(ours_out, base_out))
        remove(ours_out, base_out)
        return results

    print(f"tflite-fp16 benchmark, {args.repeats} alternating runs each, medians; Python {sys.version.split()[0]}")
    print()
    print("Large weights (24 FULLY_CONNECTED layers of 2048 x 2048):")
    path = workdir / "fc_400mb.tflite"
    size = models.fc_chain(path, width=2048, layers=24, distinct=True)
    results = case("fc_400mb", path)
    (base_time, base_peak), (time, peak) = results["baseline"], results["tflite-fp16"]
    print(f"  input {mb(size)}")
    print(
        f"  wall time   baseline {base_time:.3f} s   tflite-fp16 {time:.3f} s   ratio {time / base_time:.2f} (target <= 1.20)"
    )
    print(
        f"  peak memory baseline {mb(base_peak)}   tflite-fp16 {mb(peak)}   tflite-fp16 / input file {peak / size:.2f} (target <= 1.25)"
    )
    if time / base_time > 1.2:
        failures.append("400 MB time")
    if peak / size > 1.25:
        failures.append("400 MB memory")
    remove(path)

    print()
    print("Many small constants (FULLY_CONNECTED 4x4 weights + bias, one op per two constants):")
    points, ratio = series(
        workdir,
        baseline,
        args.repeats,
        "constant",
        (1000, 2000, 5000, 10000, 20000),
        models.many_small,
        lambda count: f"{count:>9,} {count // 2:>9,}",
        f"{'constants':>9} {'operators':>9}",
    )
    if ratio > 2.0:
        failures.append("20,000 constants time")
    linear, summary = _linear_fit(points, "constant")
    if not linear:
        failures.append("linear growth")
    print(summary)
    print("  (target at 20,000: ratio <= 2.00; linear: R^2 >= 0.99 and the last step <= 1.5 x the fitted slope)")

    print()
    print("Many subgraphs (each one FULLY_CONNECTED with its own 4x4 weight):")
    points, _ = series(
        workdir,
        baseline,
        args.repeats,
        "subgraph",
        (2500, 5000, 10000, 20000, 40000),
        models.many_subgraphs,
        lambda count: f"{count:>9,}",
        f"{'subgraphs':>9}",
    )
    linear, summary = _linear_fit(points, "subgraph")
    if not linear:
        failures.append("linear growth in subgraphs")
    print(summary)

    print()
    results = compare(
        {
            "numpy": [sys.executable, "-c", "import numpy"],
            "tflite_fp16": [sys.executable, "-c", "import tflite_fp16; tflite_fp16.rewrite"],
        },
        max(args.repeats, 9),
    )
    ratio = results["tflite_fp16"][0] / results["numpy"][0]
    print(
        f"Import (tflite_fp16: the package and its API): numpy {results['numpy'][0]:.3f} s   "
        f"tflite_fp16 {results['tflite_fp16'][0]:.3f} s   ratio {ratio:.2f} (target <= 2.00)"
    )
    if ratio > 2.0:
        failures.append("import time")
    print()
    print("all targets met" if not failures else "targets missed: " + ", ".join(failures))
    return 0 if not failures else 1


def series(workdir, baseline, repeats, unit, counts, build, label, header):  # type: ignore[no-untyped-def]
    """Time the baseline and the rewriter on models of each size. Every repeat runs every size,
    so that a noisy spell of the machine does not fall on all the runs of one size. Prints a
    row per size; returns ([(size, least CPU seconds)], the wall-time ratio at the largest size)."""
    paths = {count: workdir / f"{unit}_{count}.tflite" for count in counts}
    for count, path in paths.items():
        build(path, count)
    commands = {}
    for count, path in paths.items():
        commands[f"baseline {count}"] = baseline + [str(path), str(workdir / f"{unit}_{count}.baseline.bin")]
        commands[f"tflite-fp16 {count}"] = [CLI, str(path), str(workdir / f"{unit}_{count}.out.tflite")]
    results = compare(commands, repeats)
    print(f"  {header} {'baseline s':>11} {'tflite-fp16 s':>14} {'ratio':>6} {'CPU s':>8} {f'CPU us/{unit}':>16}")
    points, previous, ratio = [], None, 0.0
    for count in counts:
        base_time, time = results[f"baseline {count}"][0], results[f"tflite-fp16 {count}"][0]
        cpu = least_cpu(paths[count], workdir / f"{unit}_{count}.cpu.tflite", 2 * repeats + 1)
        slope = "" if previous is None else f"{1e6 * (cpu - previous[1]) / (count - previous[0]):.1f}"
        ratio = time / base_time
        print(f"  {label(count)} {base_time:>11.3f} {time:>14.3f} {ratio:>6.2f} {cpu:>8.3f} {slope:>16}")
        points.append((count, cpu))
        previous = (count, cpu)
    for path in workdir.glob(f"{unit}_*"):
        remove(path)
    return points, ratio


def _linear_fit(points, unit):  # type: ignore[no-untyped-def]
    """Linear: a straight line fits the times, and the last (largest) step costs no more per
    item than the line's slope (a quadratic part would make it grow)."""
    n = [float(c) for c, _ in points]
    t = [time for _, time in points]
    mean_n, mean_t = sum(n) / len(n), sum(t) / len(t)
    slope = sum((a - mean_n) * (b - mean_t) for a, b in zip(n, t)) / sum((a - mean_n) ** 2 for a in n)
    intercept = mean_t - slope * mean_n
    residual = sum((b - intercept - slope * a) ** 2 for a, b in zip(n, t))
    r_squared = 1 - residual / sum((b - mean_t) ** 2 for b in t)
    last_step = (t[-1] - t[-2]) / (n[-1] - n[-2])
    linear = r_squared >= 0.99 and last_step <= 1.5 * slope
    return linear, (
        f"  fit (least CPU time of a rewrite): {intercept:.3f} s + {1e6 * slope:.1f} us x {unit}s, R^2 = {r_squared:.4f}; "
        f"last step {1e6 * last_step:.1f} us/{unit}: {'linear' if linear else 'NOT linear'}"
    )


if __name__ == "__main__":
    sys.exit(main())
