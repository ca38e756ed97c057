"""float32 -> float16, exactly as TensorFlow's converter does it, with exact statistics.

The result equals ``np.clip(x, -65504, 65504).astype('<f2')``: round to
nearest even, values beyond the float16 range saturate to +-65504 (never
inf), NaN stays NaN.

Two passes over the data, both chunked (256 KiB of float32 at a time, so the
scratch stays in cache) and run on a thread pool for large buffers (NumPy
releases the GIL):

* :func:`value_stats` before planning: largest and smallest non-zero
  magnitude and the sum of squares, read off the float bits with integer
  reductions. From these the planner knows which constants cannot be
  lossy without casting them (:meth:`ValueStats.error_bound`).
* the cast itself (:class:`Float16Cast`, lazily, while the writer writes),
  which also measures what it did: :class:`CastStats` (saturated, flushed,
  max abs error, relative L2 error). It skips the clip when nothing can
  saturate and the counting when nothing can saturate or flush.

Small buffers are cast and measured together in batches
(:func:`cast_batch`), with per-buffer reductions (``reduceat``), which avoids
NumPy's per-call overhead on models of many small constants.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, NamedTuple, TypeVar

import numpy as np

__all__ = [
    "FLOAT16_MAX",
    "FLOAT16_MIN_NORMAL",
    "FLUSH_LIMIT",
    "CastResult",
    "CastStats",
    "Float16Cast",
    "ValueStats",
    "cast_batch",
    "cast_statistics",
    "cast_to_float16",
    "measure",
    "value_stats",
]

FLOAT16_MAX = 65504.0
FLOAT16_MIN_NORMAL = 2.0**-14  # below this float16 has only absolute precision (2**-24)
FLUSH_LIMIT = 2.0**-25  # a magnitude at or below this rounds to zero (ties to even)
CHUNK_ELEMENTS = 1 << 16  # 256 KiB of float32: the scratch stays in L2 cache
BLOCK_ELEMENTS = 1 << 21  # 8 MiB of float32: the unit of work of one thread
SMALL_ELEMENTS = 1 << 16  # buffers up to this size are measured and cast in batches
_ABS_BITS = np.uint32(0x7FFFFFFF)
_INF_BITS = 0x7F800000
_F = TypeVar("_F", bound=Callable[..., Any])
_ABS_MASK16 = np.uint16(0x7FFF)
# Sums of squares in float32 are safe (no underflow or overflow) within these magnitudes.
_NARROW_MIN, _NARROW_MAX = 2.0**-60, 2.0**32


def _quiet(function: _F) -> _F:
    """Run ``function`` without NumPy's floating-point warnings: infinities, NaNs (signalling
    ones included) and overflowing squares are expected here, and counted, not warned about.
    (``np.errstate`` is local to the thread, so this holds on the worker threads too.)"""

    @functools.wraps(function)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)

    return quiet  # type: ignore[return-value]


def _bits_to_float(bits: int) -> float:
    return float(np.array([bits], "<u4").view("<f4")[0])


class ValueStats(NamedTuple):
    """Cheap facts about a float32 buffer, enough to decide whether its cast can be lossy."""

    elements: int
    max_magnitude: float  # largest |x| that is not NaN (inf when an infinity is present; 0.0 when none)
    min_nonzero: float  # smallest non-zero |x| that is not NaN (inf when there is none)
    nans: int
    sum_squares: float  # sum of x**2 over the finite values

    @property
    def saturates(self) -> bool:
        """Some value lies beyond +-65504 (infinities included)."""
        return self.max_magnitude > FLOAT16_MAX

    @property
    def flushes(self) -> bool:
        """Some non-zero value is small enough to become zero."""
        return self.min_nonzero <= FLUSH_LIMIT

    @property
    def finite(self) -> bool:
        return self.nans == 0 and math.isfinite(self.max_magnitude)

    @property
    def narrow(self) -> bool:
        """Squares and their sums are exact enough in float32 (no underflow, no overflow)."""
        return (
            self.finite
            and self.max_magnitude <= _NARROW_MAX
            and (self.min_nonzero >= _NARROW_MIN or self.min_nonzero == math.inf)
        )

    def error_bound(self) -> float:
        """An upper bound of the cast's relative L2 error (inf when values saturate).

        In float16's normal range a value moves by at most half an ulp, 2**-11
        of itself; below it (|x| < 2**-14) by at most 2**-25. So
        ``sum(err**2) <= 2**-22 * sum(x**2) + n * 2**-50``.
        """
        if self.saturates:
            return math.inf
        if self.min_nonzero == math.inf:
            return 0.0  # all zero (or NaN): exact
        if self.min_nonzero >= FLOAT16_MIN_NORMAL:
            return 2.0**-11
        if not self.narrow or self.sum_squares <= 0:
            return math.inf
        # The float32 sum of squares may be off by a little; lower it for safety.
        return math.sqrt(2.0**-22 + self.elements * 2.0**-50 / (self.sum_squares * (1 - 1e-3)))


class CastStats(NamedTuple):
    """What casting one buffer to float16 did to its values (exact)."""

    elements: int
    saturated: int  # values beyond +-65504 (infinities included), now +-65504
    infinities: int  # of those, +-inf
    flushed: int  # non-zero values that became (signed) zero
    max_abs_error: float  # max |f16 - f32| over finite values; inf when an infinity saturated
    squared_error: float  # sum of (f16 - f32)**2 over finite values
    sum_squares: float  # sum of f32**2 over finite values

    @property
    def rel_l2_error(self) -> float:
        """||f16 - f32|| / ||f32|| (inf when an infinity saturated; 0 for an all-zero buffer)."""
        if self.infinities:
            return math.inf
        if self.sum_squares > 0:
            return math.sqrt(self.squared_error / self.sum_squares)
        return 0.0 if self.squared_error == 0 else math.inf

    def merge(self, other: CastStats) -> CastStats:
        return CastStats(
            self.elements + other.elements,
            self.saturated + other.saturated,
            self.infinities + other.infinities,
            self.flushed + other.flushed,
            max(self.max_abs_error, other.max_abs_error),
            self.squared_error + other.squared_error,
            self.sum_squares + other.sum_squares,
        )

    def finished(self, sum_squares: float | None = None) -> CastStats:
        """The stats with an infinity's error made infinite and, if given, the sum of squares set."""
        stats = self if sum_squares is None else self._replace(sum_squares=sum_squares)
        return stats._replace(max_abs_error=math.inf) if stats.infinities else stats


_EMPTY_STATS = CastStats(0, 0, 0, 0, 0.0, 0.0, 0.0)


class CastResult(NamedTuple):
    """float16 data and what the cast did."""

    data: np.ndarray  # 1-D '<f2'
    stats: CastStats


_FLOAT32 = np.dtype("<f4")
_BYTES = np.dtype(np.uint8)


def _as_float32(values: np.ndarray) -> np.ndarray:
    if type(values) is np.ndarray and values.ndim == 1:  # buffer data: the common case, called per constant
        if values.dtype == _BYTES:
            return values.view(_FLOAT32)
        if values.dtype == _FLOAT32:
            return values
    source = np.asarray(values).reshape(-1)
    if source.dtype == _FLOAT32:
        return source
    if source.dtype == _BYTES:
        return source.view(_FLOAT32)
    return source.astype(_FLOAT32)


# ---------------------------------------------------------------- value statistics


@_quiet
def _value_stats_large(source: np.ndarray) -> tuple[int, int, int, float]:
    """(max abs bits of non-NaN values, min of (abs bits - 1) wrapping, NaN count, sum of squares) of one block."""
    bits = source.view("<u4")
    scratch = np.empty(min(source.size, CHUNK_ELEMENTS), "<u4")
    top, bottom, nans, squares = 0, 0xFFFFFFFF, 0, 0.0
    for start in range(0, source.size, CHUNK_ELEMENTS):
        chunk = bits[start : start + CHUNK_ELEMENTS]
        magnitude = scratch[: chunk.size]
        np.bitwise_and(chunk, _ABS_BITS, out=magnitude)
        largest = int(magnitude.max())
        values = source[start : start + CHUNK_ELEMENTS]
        if largest >= _INF_BITS:  # an infinity or a NaN in this chunk: the rare, slower way
            is_nan = magnitude > _INF_BITS
            nans += int(np.count_nonzero(is_nan))
            largest = int(magnitude.max(where=~is_nan, initial=0))
            finite = values[magnitude < _INF_BITS].astype(np.float64)
            squares += float(np.dot(finite, finite))
        else:
            squares += float(np.dot(values, values))
        top = max(top, largest)
        np.subtract(magnitude, np.uint32(1), out=magnitude)  # zero wraps to the largest value
        bottom = min(bottom, int(magnitude.min()))
    return top, bottom, nans, squares


def _finish_value_stats(elements: int, top: int, bottom: int, nans: int, squares: float) -> ValueStats:
    smallest = (bottom + 1) & 0xFFFFFFFF
    min_nonzero = math.inf if smallest == 0 or smallest > _INF_BITS else _bits_to_float(smallest)
    return ValueStats(elements, _bits_to_float(top), min_nonzero, nans, squares)


@_quiet
def _value_stats_batch(sources: Sequence[np.ndarray]) -> list[ValueStats]:
    """Value statistics of many small float32 arrays in a few vectorised calls."""
    if not sources:
        return []
    sizes = np.fromiter((s.size for s in sources), np.int64, len(sources))
    starts = np.zeros(len(sources), np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    values = np.concatenate(sources) if len(sources) > 1 else sources[0]
    magnitude = values.view("<u4") & _ABS_BITS
    is_nan = magnitude > _INF_BITS
    any_nan = bool(is_nan.any())
    top = np.maximum.reduceat(np.where(is_nan, np.uint32(0), magnitude) if any_nan else magnitude, starts)
    bottom = np.minimum.reduceat(magnitude - np.uint32(1), starts)
    nans = np.add.reduceat(is_nan, starts, dtype=np.int64) if any_nan else np.zeros(len(sources), np.int64)
    wide = values.astype(np.float64)
    if any_nan or int(top.max()) >= _INF_BITS:
        wide[magnitude >= _INF_BITS] = 0.0
    squares = np.add.reduceat(wide * wide, starts)
    # The smallest non-zero magnitude: bits + 1 (zero wraps back to 0: none); none also when NaN.
    smallest = bottom + np.uint32(1)
    min_nonzero = np.where((smallest == 0) | (smallest > _INF_BITS), np.inf, smallest.view("<f4").astype(np.float64))
    return [
        ValueStats(n, t, b, c, q)
        for n, t, b, c, q in zip(
            sizes.tolist(), top.view("<f4").tolist(), min_nonzero.tolist(), nans.tolist(), squares.tolist()
        )
    ]


def value_stats(arrays: Sequence[np.ndarray], executor: Executor | None = None) -> list[ValueStats]:
    """:class:`ValueStats` of each float32 array (or raw little-endian bytes), in order.

    Small arrays are measured together; large ones block by block, on
    ``executor`` when given.

    >>> stats = value_stats([np.array([0.0, -2.0, 1e-10], np.float32)])[0]
    >>> stats.max_magnitude, stats.flushes, stats.saturates
    (2.0, True, False)
    """
    sources = [_as_float32(a) for a in arrays]
    result: list[ValueStats | None] = [None] * len(sources)
    for i, source in enumerate(sources):
        if source.size == 0:
            result[i] = ValueStats(0, 0.0, math.inf, 0, 0.0)
    small = [i for i, s in enumerate(sources) if 0 < s.size <= SMALL_ELEMENTS]
    for first in range(0, len(small), 4096):
        group = small[first : first + 4096]
        for i, stats in zip(group, _value_stats_batch([sources[i] for i in group])):
            result[i] = stats
    large = [i for i, s in enumerate(sources) if s.size > SMALL_ELEMENTS]
    blocks = [
        (i, sources[i][start : start + BLOCK_ELEMENTS])
        for i in large
        for start in range(0, sources[i].size, BLOCK_ELEMENTS)
    ]
    measured = (
        executor.map(_value_stats_large, [b for _, b in blocks])
        if executor is not None
        else map(_value_stats_large, [b for _, b in blocks])
    )
    parts: dict[int, list[tuple[int, int, int, float]]] = {i: [] for i in large}
    for (i, _), part in zip(blocks, measured):
        parts[i].append(part)
    for i in large:
        p = parts[i]
        result[i] = _finish_value_stats(
            sources[i].size, max(q[0] for q in p), min(q[1] for q in p), sum(q[2] for q in p), sum(q[3] for q in p)
        )
    return result  # type: ignore[return-value]


# ---------------------------------------------------------------- the cast


_U32 = np.uint32
_NORMAL_BITS = _U32(0x38800000)  # float32 bits of 2**-14, float16's smallest normal value
_HALF_BITS = _U32(0x3F000000)  # float32 bits of 0.5


class _Scratch:
    """Per-block work arrays, one chunk long, reused chunk after chunk (they stay in cache)."""

    def __init__(self, size: int) -> None:
        self.magnitude = np.empty(size, "<u4")
        self.other = np.empty(size, "<u4")
        self.rounded = np.empty(size, "<u4")
        self.error = np.empty(size, "<f4")


def _cast_chunk(chunk: np.ndarray, half: np.ndarray, scratch: _Scratch) -> tuple[float, float, int]:
    """Cast float32 ``chunk`` (finite, |x| <= 65504) into float16 ``half``; return
    (sum of squared errors, max abs error, values flushed to zero).

    NumPy's float32 -> float16 conversion is slow where the CPU path is not
    vectorised (about 3 ns a value), and widening back to measure the error
    costs half as much again. In float16's normal range, rounding to float16
    is rounding the float32 significand to 10 bits, to nearest even, which a
    few integer operations on the bits do; the rounded float32 is the float16
    value itself, so the error comes for free. Values below float16's normal
    range (and zeros) are rounded at float16's subnormal step with a float add.
    """
    n = chunk.size
    bits = chunk.view("<u4")
    magnitude, other, rounded, error = scratch.magnitude[:n], scratch.other[:n], scratch.rounded[:n], scratch.error[:n]
    np.bitwise_and(bits, _ABS_BITS, out=magnitude)
    np.right_shift(magnitude, _U32(13), out=other)
    np.bitwise_and(other, _U32(1), out=other)
    np.add(other, _U32(0x0FFF), out=other)
    np.add(magnitude, other, out=rounded)  # + 0x0FFF, + 1 more when the kept last bit is odd: ties to even
    np.bitwise_and(rounded, _U32(0xFFFFE000), out=rounded)
    np.subtract(rounded.view("<f4"), magnitude.view("<f4"), out=error)
    below = magnitude < _NORMAL_BITS
    np.subtract(rounded, _U32(0x38000000), out=rounded)  # exponent bias 127 -> 15
    np.right_shift(rounded, _U32(13), out=rounded)
    np.right_shift(bits, _U32(16), out=other)
    np.bitwise_and(other, _U32(0x8000), out=other)
    np.bitwise_or(rounded, other, out=rounded)
    half_bits = half.view("<u2")
    half_bits[...] = rounded
    flushed = 0
    if below.any():
        # Below 2**-14 float16 steps by 2**-24: adding 0.5 (whose float32 ulp is 2**-24) rounds
        # |x| to that step, to nearest even, and the sum's bits minus 0.5's are the float16 bits.
        where = np.flatnonzero(below)
        small = magnitude[where].view("<f4")
        summed = small + np.float32(0.5)
        half_bits[where] = (summed.view("<u4") - _HALF_BITS).astype("<u2") | (
            bits[where] >> _U32(16) & _U32(0x8000)
        ).astype("<u2")
        value = summed - np.float32(0.5)
        error[where] = value - small
        flushed = int(np.count_nonzero((value == 0) & (small != 0)))
    return float(np.dot(error, error)), max(float(error.max()), -float(error.min())), flushed


@_quiet
def _cast_block(source: np.ndarray, values: ValueStats) -> tuple[np.ndarray, CastStats]:
    """A new float16 array for float32 ``source`` (one block of a buffer), and what the cast did.

    The sum of squares is left to the caller when ``values.narrow`` (it is the
    pre-pass's); otherwise it is computed here in float64.
    """
    out = np.empty(source.size, "<f2")
    if not values.narrow or values.saturates:
        return out, _cast_block_wide(source, out)
    scratch = _Scratch(min(source.size, CHUNK_ELEMENTS))
    flushed = 0
    max_error = squared_error = 0.0
    for start in range(0, source.size, CHUNK_ELEMENTS):
        chunk = source[start : start + CHUNK_ELEMENTS]
        chunk_error, chunk_max, chunk_flushed = _cast_chunk(chunk, out[start : start + chunk.size], scratch)
        squared_error += chunk_error
        max_error = max(max_error, chunk_max)
        flushed += chunk_flushed
    return out, CastStats(source.size, 0, 0, flushed, max_error, squared_error, 0.0)


def _cast_block_wide(source: np.ndarray, out: np.ndarray) -> CastStats:
    """The cast of a block with values beyond +-65504, infinities, NaNs or badly scaled values:
    NumPy's conversion, sums in float64 (slower; such constants are lossy and rare)."""
    saturated = infinities = flushed = 0
    max_error = squared_error = sum_squares = 0.0
    for start in range(0, source.size, CHUNK_ELEMENTS):
        chunk = source[start : start + CHUNK_ELEMENTS]
        half = out[start : start + chunk.size]
        half[...] = np.clip(chunk, -FLOAT16_MAX, FLOAT16_MAX)
        saturated += int(np.count_nonzero(np.abs(chunk) > FLOAT16_MAX))
        wide = chunk.astype(np.float64)
        bad = ~np.isfinite(wide)
        if bad.any():
            wide[bad] = 0.0
            infinities += int(np.count_nonzero(np.isinf(chunk)))
        error = half.astype(np.float64)
        error[bad] = 0.0
        error -= wide
        squared_error += float(np.dot(error, error))
        max_error = max(max_error, float(np.abs(error).max()))
        sum_squares += float(np.dot(wide, wide))
        flushed += int(np.count_nonzero((half == 0) & (chunk != 0)))
    return CastStats(source.size, saturated, infinities, flushed, max_error, squared_error, sum_squares)


def _block_sum_squares(values: ValueStats) -> float | None:
    """The pre-pass's sum of squares when the cast left it out (see :func:`_cast_block`)."""
    return values.sum_squares if values.narrow else None


@_quiet
def _cast_many(sources: Sequence[np.ndarray], values: Sequence[ValueStats]) -> tuple[np.ndarray, list[CastStats]]:
    """Cast many small float32 arrays at once: the float16 data, concatenated, and each one's stats."""
    sizes = np.fromiter((s.size for s in sources), np.int64, len(sources))
    starts = np.zeros(len(sources), np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    source = np.concatenate(sources) if len(sources) > 1 else sources[0]
    saturates = any(v.saturates for v in values)
    finite = all(v.finite for v in values)
    half = (np.clip(source, -FLOAT16_MAX, FLOAT16_MAX) if saturates else source).astype("<f2")
    wide = source.astype(np.float64)
    error = half.astype(np.float64) - wide
    count = len(sources)

    def per_buffer(flags: np.ndarray) -> np.ndarray:
        positions = np.flatnonzero(flags)
        if not positions.size:
            return np.zeros(count, np.int64)
        return np.bincount(np.searchsorted(starts, positions, side="right") - 1, minlength=count)

    infinities = np.zeros(count, np.int64)
    if not finite:
        bad = ~np.isfinite(wide)
        error[bad] = 0.0
        wide[bad] = 0.0
        infinities = per_buffer(np.isinf(source))
    saturated = per_buffer(np.abs(source) > FLOAT16_MAX) if saturates else np.zeros(count, np.int64)
    flushed = per_buffer((half == 0) & (source != 0)) if any(v.flushes for v in values) else np.zeros(count, np.int64)
    squared_error = np.add.reduceat(error * error, starts)
    max_error = np.maximum.reduceat(np.abs(error), starts)
    sum_squares = np.add.reduceat(wide * wide, starts)
    stats = [
        CastStats(*row).finished()
        for row in zip(
            sizes.tolist(),
            saturated.tolist(),
            infinities.tolist(),
            flushed.tolist(),
            max_error.tolist(),
            squared_error.tolist(),
            sum_squares.tolist(),
        )
    ]
    return half, stats


def cast_to_float16(values: np.ndarray) -> CastResult:
    """Cast float32 ``values`` (any shape, or raw bytes viewable as '<f4') to float16.

    >>> result = cast_to_float16(np.array([1.0, 1e6, 1e-9], np.float32))
    >>> result.data.tolist(), result.stats.saturated, result.stats.flushed
    ([1.0, 65504.0, 0.0], 1, 1)
    """
    cast = Float16Cast(values)
    return CastResult(cast.array(), cast.stats)  # type: ignore[arg-type]


def cast_statistics(values: np.ndarray, stats: ValueStats | None = None, executor: Executor | None = None) -> CastStats:
    """What casting ``values`` to float16 would do, without keeping the float16 data."""
    cast = Float16Cast(values, stats)
    for _ in cast.blocks(executor):
        pass
    cast.release()
    return cast.stats  # type: ignore[return-value]


class Float16Cast:
    """The float16 version of a float32 buffer, cast when it is written.

    ``nbytes`` is known up front, so the writer can lay out the file; the data
    comes from :meth:`blocks` (or :meth:`array`, for small buffers and tests);
    once it has been produced, :attr:`stats` says what the cast did.
    ``values`` are the buffer's :class:`ValueStats` when already known.

    It is the writer's :class:`~tflite_fp16.format.writer.DeferredData`: small
    casts are ``groupable`` (cast in batches, :meth:`prepare_group`), and
    :meth:`chunks` yields the blocks and then forgets them.
    """

    __slots__ = ("_array", "nbytes", "pinned", "source", "stats", "values")

    def __init__(self, source: np.ndarray, values: ValueStats | None = None) -> None:
        self.source = _as_float32(source)
        self.nbytes = self.source.size * 2
        self.values = values if values is not None else value_stats([self.source])[0]
        self.stats: CastStats | None = None
        self.pinned = False  # keep the float16 data once cast (a search writes the same casts many times)
        self._array: np.ndarray | None = None

    def array(self) -> np.ndarray:
        """The whole float16 array (computed once)."""
        if self._array is None:
            if self.source.size == 0:
                self._array, self.stats = np.empty(0, "<f2"), _EMPTY_STATS
            elif self.source.size <= SMALL_ELEMENTS:
                self._array, (self.stats,) = _cast_many([self.source], [self.values])
            else:
                self._array, stats = _cast_block(self.source, self.values)
                self.stats = stats.finished(_block_sum_squares(self.values))
        return self._array

    @property
    def groupable(self) -> bool:
        return self.source.size <= SMALL_ELEMENTS

    @classmethod
    def prepare_group(cls, items: Sequence[Float16Cast]) -> None:
        cast_batch(items)

    def chunks(self, context: Any) -> Iterator[np.ndarray]:
        """The float16 data block by block on ``context.executor``, forgotten once written."""
        yield from self.blocks(context.executor)
        self.release()

    def release(self) -> None:
        """Forget the float16 data once it is written (the stats stay), unless pinned."""
        if not self.pinned:
            self._array = None

    def blocks(self, executor: Executor | None = None, in_flight: int = 4) -> Iterator[np.ndarray]:
        """The float16 data in order, block by block, cast ``in_flight`` blocks ahead on ``executor``."""
        if self._array is not None or self.source.size <= BLOCK_ELEMENTS or executor is None:
            yield self.array()
            return
        pending = []
        total = _EMPTY_STATS
        for start in range(0, self.source.size, BLOCK_ELEMENTS):
            pending.append(executor.submit(_cast_block, self.source[start : start + BLOCK_ELEMENTS], self.values))
            if len(pending) >= in_flight:
                block, stats = pending.pop(0).result()
                total = total.merge(stats)
                yield block
        for future in pending:
            block, stats = future.result()
            total = total.merge(stats)
            yield block
        self.stats = total.finished(_block_sum_squares(self.values))


def cast_batch(casts: Sequence[Float16Cast]) -> None:
    """Cast many small buffers in a few NumPy calls; each cast's :meth:`~Float16Cast.array`
    then returns its slice of the batch, and its :attr:`~Float16Cast.stats` are its own."""
    todo = [c for c in casts if c._array is None and c.source.size]
    if not todo:
        return
    half, stats = _cast_many([c.source for c in todo], [c.values for c in todo])
    position = 0
    for cast, cast_stats in zip(todo, stats):
        cast._array = half[position : position + cast.source.size]
        cast.stats = cast_stats
        position += cast.source.size


def measure(casts: Sequence[Float16Cast], executor: Executor | None = None) -> None:
    """Cast every buffer to fill in its :attr:`~Float16Cast.stats`, keeping none of the
    float16 data (a dry run): small buffers in batches, large ones block by block."""
    small = [c for c in casts if c.source.size <= SMALL_ELEMENTS]
    start = 0
    while start < len(small):
        end, total = start, 0
        while end < len(small) and (end == start or total + small[end].source.size <= 1 << 22):
            total += small[end].source.size
            end += 1
        cast_batch(small[start:end])
        for cast in small[start:end]:
            cast.release()
        start = end
    for cast in casts:
        if cast.source.size > SMALL_ELEMENTS:
            for _ in cast.blocks(executor):
                pass
            cast.release()
