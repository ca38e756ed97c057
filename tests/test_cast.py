"""float32 -> float16 equals TensorFlow's rule, np.clip(x, -65504, 65504).astype('<f2'), and
every statistic equals an independent float64 computation."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tflite_fp16.conversion.cast import (
    BLOCK_ELEMENTS,
    CHUNK_ELEMENTS,
    SMALL_ELEMENTS,
    Float16Cast,
    cast_batch,
    cast_statistics,
    cast_to_float16,
    measure,
    value_stats,
)


def reference(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -65504, 65504).astype("<f2")


def expected_stats(x: np.ndarray) -> dict:  # type: ignore[type-arg]
    """What the cast statistics must be, in float64, from first principles."""
    half = reference(x).astype(np.float64)
    wide = x.astype(np.float64)
    finite = np.isfinite(wide)
    error = np.where(finite, half - wide, 0.0)
    squares = np.where(finite, wide, 0.0) ** 2
    infinities = int(np.count_nonzero(np.isinf(wide)))
    sum_squares = float(squares.sum())
    squared_error = float((error**2).sum())
    if infinities:
        rel = math.inf
    elif sum_squares > 0:
        rel = math.sqrt(squared_error / sum_squares)
    else:
        rel = 0.0 if squared_error == 0 else math.inf
    return {
        "saturated": int(np.count_nonzero(np.abs(wide) > 65504)),
        "infinities": infinities,
        "flushed": int(np.count_nonzero((half == 0) & (wide != 0))),
        "max_abs_error": math.inf if infinities else (float(np.abs(error).max()) if x.size else 0.0),
        "rel_l2_error": rel,
    }


def assert_stats(stats, x: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    want = expected_stats(x)
    assert stats.elements == x.size
    assert stats.saturated == want["saturated"]
    assert stats.infinities == want["infinities"]
    assert stats.flushed == want["flushed"]
    assert stats.max_abs_error == pytest.approx(want["max_abs_error"], rel=1e-6, abs=0)
    if math.isfinite(want["rel_l2_error"]):
        # float32 accumulation of the sums in the fast path: a few parts per million
        assert stats.rel_l2_error == pytest.approx(want["rel_l2_error"], rel=1e-4, abs=1e-12)
    else:
        assert stats.rel_l2_error == want["rel_l2_error"]


float32s = st.floats(width=32, allow_nan=True, allow_infinity=True)
special = st.sampled_from(
    [0.0, -0.0, 1e-10, -3e-8, 2.9802322e-08, 6e-8, 6.1e-5, 65504.0, 65519.0, 65520.0, -1e6, np.inf, -np.inf, np.nan]
)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays("<f4", st.integers(0, 3000), elements=st.one_of(float32s, special)))
def test_cast_is_bit_identical_and_its_stats_exact(x: np.ndarray) -> None:
    result = cast_to_float16(x)
    assert result.data.dtype == np.dtype("<f2")
    assert np.array_equal(result.data.view("<u2"), reference(x).view("<u2"))
    assert_stats(result.stats, x)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays("<f4", st.integers(1, 2000), elements=st.one_of(float32s, special)))
def test_value_stats_and_the_error_bound_never_underestimates(x: np.ndarray) -> None:
    stats = value_stats([x])[0]
    wide = x.astype(np.float64)
    not_nan = wide[~np.isnan(wide)]
    assert stats.nans == int(np.count_nonzero(np.isnan(wide)))
    assert stats.max_magnitude == (float(np.abs(not_nan).max()) if not_nan.size else 0.0)
    nonzero = np.abs(not_nan[not_nan != 0])
    assert stats.min_nonzero == (float(nonzero.min()) if nonzero.size else math.inf)
    assert stats.saturates == bool((np.abs(not_nan) > 65504).any())
    # The planner skips the exact cast when this bound is within the limit: it must hold.
    exact = expected_stats(x)["rel_l2_error"]
    assert stats.error_bound() >= exact or math.isnan(exact)


def test_saturates_never_inf_and_keeps_nan() -> None:
    x = np.array([65504, 65519, 65520, 1e30, np.inf, -np.inf, np.nan, 2e-8, -2.9e-8, 6e-8], "<f4")
    result = cast_to_float16(x)
    assert not np.isinf(result.data).any()
    assert result.data[:6].tolist() == [65504, 65504, 65504, 65504, 65504, -65504]
    assert np.isnan(result.data[6])
    assert (result.stats.saturated, result.stats.infinities, result.stats.flushed) == (5, 2, 2)
    assert result.stats.rel_l2_error == math.inf and result.stats.max_abs_error == math.inf


def test_round_to_nearest_even() -> None:
    # 1 + 2**-11 lies halfway between 1 and the next float16 (1 + 2**-10): ties go to even (1.0).
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11], "<f4")
    assert cast_to_float16(x).data.tolist() == [1.0, 1 + 2 * 2**-10]


@pytest.mark.parametrize("kind", ["plain", "saturating", "tiny", "nonfinite"])
def test_large_buffers_chunked_and_in_parallel_blocks(kind: str) -> None:
    """The large-buffer path (chunks, threads, float32 sums) gives the same bits and stats."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(BLOCK_ELEMENTS * 2 + 1234) * 0.05).astype("<f4")
    if kind == "saturating":
        x[::5000] = 1e5
    if kind == "tiny":
        x[::1000] = 1e-9
        x[7::1000] = 3e-6  # float16 subnormal range
    if kind == "nonfinite":
        x[::100000] = np.inf
        x[3] = np.nan
        x[5] = -np.inf
    lazy = Float16Cast(x.view(np.uint8))
    assert lazy.nbytes == x.size * 2
    with ThreadPoolExecutor(2) as executor:
        blocks = list(lazy.blocks(executor, in_flight=2))
    assert len(blocks) == 3
    assert np.array_equal(np.concatenate(blocks).view("<u2"), reference(x).view("<u2"))
    assert_stats(lazy.stats, x)
    assert_stats(cast_statistics(x), x)  # single-threaded, without keeping the data


def test_badly_scaled_values_use_float64_sums() -> None:
    """Squares of 1e-30 underflow in float32; the error must still be right."""
    x = np.full(CHUNK_ELEMENTS * 3, 1e-30, "<f4")
    stats = cast_statistics(x)
    assert stats.flushed == x.size and stats.rel_l2_error == pytest.approx(1.0)


def test_batch_of_small_casts_has_per_buffer_stats() -> None:
    arrays = [np.array(v, "<f4") for v in ([1.0, 7e4], [], [3e-9, -2.5], [65520.0], [np.inf, 1.0], [0.1] * 100)]
    casts = [Float16Cast(a) for a in arrays]
    cast_batch(casts)
    for a, c in zip(arrays, casts):
        assert np.array_equal(c.array().view("<u2"), reference(a).view("<u2"))
        assert_stats(c.stats, a)


def test_measure_fills_stats_and_keeps_no_data() -> None:
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(n).astype("<f4") for n in (3, SMALL_ELEMENTS + 5, 17)]
    casts = [Float16Cast(a) for a in arrays]
    measure(casts)
    for a, c in zip(arrays, casts):
        assert c._array is None
        assert_stats(c.stats, a)


def test_value_stats_batches_many_small_arrays_like_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    arrays = [
        (rng.standard_normal(rng.integers(1, 50)) * 10.0 ** rng.integers(-12, 6)).astype("<f4") for _ in range(5000)
    ]
    arrays[10][0] = np.nan
    arrays[20][1:] = np.inf
    together = value_stats(arrays)
    for a, s in zip(arrays[::97], together[::97]):
        alone = value_stats([a])[0]
        assert alone == s
    assert together[10].nans == 1 and together[20].max_magnitude == math.inf


def test_every_exponent_and_every_rounding_pattern_matches_numpy() -> None:
    """Rounding to float16 depends on the exponent and on the low 14 bits of the significand
    (the 13 dropped bits and the last kept one); carries reach the exponent. Every float32
    exponent up to 2**16 (above, values saturate), every such 14-bit pattern, both signs, two
    patterns of the other significand bits: 9 million values, bit for bit, through the integer
    rounding itself and through the public cast. (benchmarks/check_cast_exhaustive.py checks
    all 2**32 float32 values.)"""
    from tflite_fp16.conversion.cast import _cast_chunk, _Scratch

    low = np.arange(1 << 14, dtype=np.uint32)
    patterns = [
        np.uint32(sign << 31) | np.uint32(exponent << 23) | np.uint32(high << 14) | low
        for exponent in range(143)
        for high in (0, 0x1FF)
        for sign in (0, 1)
    ]
    x = np.clip(np.concatenate(patterns).view("<f4"), -65504, 65504)
    want = reference(x).view("<u2")
    half = np.empty(x.size, "<f2")
    scratch = _Scratch(CHUNK_ELEMENTS)
    flushed = 0
    for start in range(0, x.size, CHUNK_ELEMENTS):
        flushed += _cast_chunk(x[start : start + CHUNK_ELEMENTS], half[start : start + CHUNK_ELEMENTS], scratch)[2]
    assert np.array_equal(half.view("<u2"), want)
    assert flushed == int(np.count_nonzero((want & 0x7FFF == 0) & (x != 0)))
    assert np.array_equal(cast_to_float16(x).data.view("<u2"), want)
