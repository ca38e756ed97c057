"""Check the float16 cast against NumPy's ``np.clip(x, -65504, 65504).astype('<f2')`` for
every one of the 2**32 float32 bit patterns (NaNs, infinities, subnormals included).

    python benchmarks/check_cast_exhaustive.py     # about 8 minutes on 2 cores

Prints the number of mismatching values (0 expected) and exits non-zero if any.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tflite_fp16.conversion.cast import Float16Cast

STEP = 1 << 26  # 64 M values (256 MB) at a time


def main() -> int:
    start = time.perf_counter()
    mismatches = 0
    for first in range(0, 1 << 32, STEP):
        bits = np.arange(first, first + STEP, dtype=np.uint64).astype(np.uint32)
        values = bits.view("<f4")
        ours = Float16Cast(values).array().view("<u2")
        theirs = np.clip(values, -65504, 65504).astype("<f2").view("<u2")
        mismatches += int(np.count_nonzero(ours != theirs))
        print(f"\r{(first + STEP) / (1 << 32):6.1%} checked, {mismatches} mismatches", end="", flush=True)
    print(f"\nall 2**32 float32 values: {mismatches} mismatches, {time.perf_counter() - start:.0f} s")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
