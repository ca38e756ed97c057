"""float32 -> float16, exactly as TensorFlow's converter does it, with counts.

The result equals ``np.clip(x, -65504, 65504).astype('<f2')``: round to
nearest even, values beyond the float16 range saturate to +-65504 (never
inf), NaN stays NaN.

Large buffers are cast lazily, block by block, while the writer writes them
(:class:`Float16Cast`), so the float16 copy of a model is never in memory at
once; blocks are cast on a thread pool (NumPy releases the GIL) in
cache-sized chunks, which avoids the full-size temporaries of a whole-array
``np.clip(...).astype(...)``. Small buffers are cast together in one batch
(:func:`cast_batch`), which avoids NumPy's per-call overhead.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Iterator, List, Sequence, Tuple

import numpy as np

__all__ = ["CastResult", "CastCounts", "Float16Cast", "cast_to_float16", "cast_batch", "FLOAT16_MAX"]

FLOAT16_MAX = 65504.0
CHUNK_ELEMENTS = 1 << 16  # 256 KiB of float32: the clip's scratch stays in L2 cache
BLOCK_ELEMENTS = 1 << 21  # 8 MiB of float32: the unit of work of one thread
_ABS_MASK = np.uint16(0x7FFF)
_HALF_MAX_BITS = np.uint16(0x7BFF)  # 65504 without its sign


@dataclass(frozen=True)
class CastCounts:
    """What the cast did to values float16 cannot hold."""

    clipped: int = 0  # finite or infinite values beyond +-65504, saturated
    flushed: int = 0  # non-zero values that became (signed) zero

    def __add__(self, other: "CastCounts") -> "CastCounts":
        return CastCounts(self.clipped + other.clipped, self.flushed + other.flushed)


@dataclass(frozen=True)
class CastResult:
    """float16 data and the counts of the cast that made it."""

    data: np.ndarray  # 1-D '<f2'
    clipped: int
    flushed: int


def _as_float32(values: np.ndarray) -> np.ndarray:
    source = np.asarray(values).reshape(-1)
    if source.dtype == np.dtype("<f4"):
        return source
    if source.dtype == np.uint8:
        return source.view("<f4")
    return source.astype("<f4")


def _cast_into(source: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> CastCounts:
    """Cast float32 ``source`` into float16 ``out`` chunk by chunk; count saturated and flushed values.

    The counts look at the float16 result first (one pass over 2-byte values)
    and at the source only where the result is +-65504 or zero, which is rare.
    """
    clipped = flushed = 0
    for start in range(0, source.size, CHUNK_ELEMENTS):
        chunk = source[start : start + CHUNK_ELEMENTS]
        clip = scratch[: chunk.size]
        np.clip(chunk, -FLOAT16_MAX, FLOAT16_MAX, out=clip)
        half = out[start : start + chunk.size]
        half[...] = clip
        magnitude = half.view("<u2") & _ABS_MASK
        at_max = np.flatnonzero(magnitude == _HALF_MAX_BITS)
        if at_max.size:
            clipped += int(np.count_nonzero(np.abs(chunk[at_max]) > FLOAT16_MAX))
        at_zero = np.flatnonzero(magnitude == 0)
        if at_zero.size:
            flushed += int(np.count_nonzero(chunk[at_zero]))
    return CastCounts(clipped, flushed)


def cast_to_float16(values: np.ndarray) -> CastResult:
    """Cast float32 ``values`` (any shape, or raw bytes viewable as '<f4') to float16.

    >>> result = cast_to_float16(np.array([1.0, 1e6, 1e-9], np.float32))
    >>> result.data.tolist(), result.clipped, result.flushed
    ([1.0, 65504.0, 0.0], 1, 1)
    """
    out, counts = _cast_block(_as_float32(values))
    return CastResult(out, counts.clipped, counts.flushed)


def _cast_block(source: np.ndarray) -> Tuple[np.ndarray, CastCounts]:
    """A new float16 array for float32 ``source``, and the counts."""
    out = np.empty(source.size, "<f2")
    counts = _cast_into(source, out, np.empty(min(source.size, CHUNK_ELEMENTS), "<f4"))
    return out, counts


class Float16Cast:
    """The float16 version of a float32 buffer, cast when it is written.

    ``nbytes`` is known up front, so the writer can lay out the file; the data
    comes from :meth:`blocks` (or :meth:`array`, for small buffers and tests).
    """

    def __init__(self, source: np.ndarray) -> None:
        self.source = _as_float32(source)
        self.nbytes = self.source.size * 2
        self.counts = CastCounts()
        self._array: "np.ndarray | None" = None

    def array(self) -> np.ndarray:
        """The whole float16 array (computed once)."""
        if self._array is None:
            result = cast_to_float16(self.source)
            self._array, self.counts = result.data, CastCounts(result.clipped, result.flushed)
        return self._array

    def release(self) -> None:
        """Forget the float16 data once it is written (the counts stay)."""
        self._array = None

    def blocks(self, executor: Executor, in_flight: int = 4) -> Iterator[np.ndarray]:
        """The float16 data in order, block by block, cast ``in_flight`` blocks ahead on ``executor``."""
        if self._array is not None or self.source.size <= BLOCK_ELEMENTS:
            yield self.array()
            return
        pending = []
        counts = CastCounts()
        for start in range(0, self.source.size, BLOCK_ELEMENTS):
            pending.append(executor.submit(_cast_block, self.source[start : start + BLOCK_ELEMENTS]))
            if len(pending) >= in_flight:
                block, block_counts = pending.pop(0).result()
                counts += block_counts
                yield block
        for future in pending:
            block, block_counts = future.result()
            counts += block_counts
            yield block
        self.counts = counts


def cast_batch(casts: Sequence[Float16Cast]) -> None:
    """Cast many small buffers in one NumPy call each for clip and convert.

    Each cast's :meth:`Float16Cast.array` then returns its slice of the batch.
    """
    todo: List[Float16Cast] = [c for c in casts if c._array is None]
    if not todo:
        return
    sources = np.concatenate([c.source for c in todo])
    result = cast_to_float16(sources)
    position = 0
    for cast in todo:
        cast._array = result.data[position : position + cast.source.size]
        position += cast.source.size
    # The counts belong to the batch; they are reported as totals.
    todo[0].counts = CastCounts(result.clipped, result.flushed)
