"""The long fuzz run: many structure-aware mutants, each judged as tests/test_fuzz.py does.

    python benchmarks/fuzz.py [--mutants 10000] [--seed 0] [--no-litert]

Bases: every model in tests/data under 40 KB, the test builder's runnable models,
the hostile files of tests/hostile.py (small sizes), each also with its buffer
data moved after the flatbuffer. Each mutant changes 1 to 4 structural fields
(offsets redirected to share, form DAGs or read an object as another type;
vector lengths; union types; indices; buffer ranges; appended or cut bytes).

A mutant passes when the rewrite ends in our own error with nothing written,
or in an output that reads back, is at most 3x the input plus 64 KB, and
loads in LiteRT whenever LiteRT loads the input; always within 20 s, peak
memory 200x the file plus 64 MB, no file left behind, the input unchanged.
Prints the outcomes and every failure (with its seed); exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import fuzzing  # noqa: E402
import hostile  # noqa: E402
import tflite_builder as tb  # noqa: E402

from tflite_fp16.format.reader import parse_model  # noqa: E402
from tflite_fp16.format.writer import to_bytes  # noqa: E402


def bases() -> list:  # type: ignore[type-arg]
    found = [
        (p.name, p.read_bytes())
        for p in sorted((ROOT / "tests" / "data").glob("*.tflite"))
        if p.stat().st_size < 40_000
    ]
    found += [("add_model", tb.build(tb.add_model())), ("frontend_model", tb.build(tb.frontend_model()))]
    found += [
        ("shared_subgraph", hostile.shared_subgraph_with_a_constant()),
        ("shared_data", hostile.chain_sharing_one_data_vector(buffers=20, width=64)),
    ]
    return found + [
        (f"{name} (offset layout)", to_bytes(parse_model(content), layout="offset")) for name, content in found
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-litert", action="store_true", help="skip the LiteRT load checks")
    args = parser.parse_args()
    models = bases()
    loader = None if args.no_litert else fuzzing.LiteRTLoader()
    loads = collections.Counter()
    if loader is not None:
        real_loads = loader.loads

        def counted(path):  # type: ignore[no-untyped-def]
            result = real_loads(path)
            loads[(Path(path).name, result[0])] += 1
            return result

        loader.loads = counted  # type: ignore[method-assign]
    outcomes: collections.Counter = collections.Counter()
    failures = []
    slowest = 0.0
    largest_memory = 0
    start = time.perf_counter()
    for i in range(args.mutants):
        seed = args.seed + i
        name, content = models[seed % len(models)]
        mutant = fuzzing.mutate(content, seed)
        directory = Path(tempfile.mkdtemp(prefix="tflite-fp16-fuzz-"))
        try:
            outcome = fuzzing.judge(mutant, directory, loader)
            outcomes[outcome.kind] += 1
            slowest = max(slowest, outcome.seconds)
            largest_memory = max(largest_memory, outcome.peak_bytes)
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            failures.append((seed, name, f"{type(error).__name__}: {str(error)[:300]}"))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        if (i + 1) % 500 == 0:
            print(f"  {i + 1:,} mutants, {len(failures)} failures", flush=True)
    if loader is not None:
        loader.close()
    elapsed = time.perf_counter() - start
    print(
        f"{args.mutants:,} mutants of {len(models)} base models (seeds {args.seed}..{args.seed + args.mutants - 1}), {elapsed:.0f} s"
    )
    for kind in ("converted", "unchanged", "invalid", "unsupported", "refused"):
        print(f"  {kind:<12} {outcomes[kind]:>6,}")
    if loader is not None:
        print(
            f"  converted mutants LiteRT loads: {loads[('in.tflite', True)]:,}, and their outputs it loads: "
            f"{loads[('out.tflite', True)]:,} (LiteRT refuses {loads[('in.tflite', False)]:,} converted inputs; not compared)"
        )
    print(
        f"  slowest mutant {slowest:.2f} s; largest peak memory {largest_memory / 1e6:.1f} MB "
        f"(largest file {max(len(c) for _, c in models) / 1e3:.0f} KB)"
    )
    print(f"  failures: {len(failures)}")
    for seed, name, message in failures[:50]:
        print(f"    seed {seed} ({name}): {message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
