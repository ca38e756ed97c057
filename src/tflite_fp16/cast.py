"""float32 -> float16, exactly as TensorFlow's converter does it, with counts.

The result equals ``np.clip(x, -65504, 65504).astype('<f2')``: round to
nearest even, values beyond the float16 range saturate to +-65504 (never
inf), NaN stays NaN. The work runs in cache-sized chunks, so the clip needs
no full-size temporary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import FLOAT16_MAX

__all__ = ["CastResult", "cast_to_float16"]

CHUNK_ELEMENTS = 1 << 16  # 256 KiB of float32: stays in L2 cache


@dataclass(frozen=True)
class CastResult:
    """float16 data and what the cast did to values float16 cannot hold."""

    data: np.ndarray  # 1-D '<f2'
    clipped: int  # finite or infinite values beyond +-65504, saturated
    flushed: int  # non-zero values that became (signed) zero


def cast_to_float16(values: np.ndarray) -> CastResult:
    """Cast float32 ``values`` (any shape, any byte buffer viewable as '<f4') to float16.

    >>> result = cast_to_float16(np.array([1.0, 1e6, 1e-9], np.float32))
    >>> result.data.tolist(), result.clipped, result.flushed
    ([1.0, 65504.0, 0.0], 1, 1)
    """
    source = np.asarray(values).reshape(-1)
    if source.dtype != np.dtype("<f4"):
        source = source.view("<f4") if source.dtype == np.uint8 else source.astype("<f4")
    out = np.empty(source.size, "<f2")
    scratch = np.empty(min(source.size, CHUNK_ELEMENTS), "<f4")
    clipped = flushed = 0
    for start in range(0, source.size, CHUNK_ELEMENTS):
        chunk = source[start : start + CHUNK_ELEMENTS]
        clip = scratch[: chunk.size]
        np.clip(chunk, -FLOAT16_MAX, FLOAT16_MAX, out=clip)
        half = out[start : start + chunk.size]
        half[...] = clip
        clipped += int(np.count_nonzero(np.abs(chunk) > FLOAT16_MAX))
        flushed += int(np.count_nonzero(half == 0)) - int(np.count_nonzero(chunk == 0))
    return CastResult(out, clipped, flushed)
