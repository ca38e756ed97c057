"""float32 -> float16 equals TensorFlow's rule: np.clip(x, -65504, 65504).astype('<f2')."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tflite_fp16.cast import CHUNK_ELEMENTS, cast_to_float16


def reference(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -65504, 65504).astype("<f2")


@settings(max_examples=300, deadline=None)
@given(hnp.arrays("<f4", st.integers(0, 3000), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_bit_identical_to_clip_then_astype(x: np.ndarray) -> None:
    result = cast_to_float16(x)
    assert result.data.dtype == np.dtype("<f2")
    assert np.array_equal(result.data.view("<u2"), reference(x).view("<u2"))
    assert result.clipped == int(np.count_nonzero(np.abs(x) > 65504))
    assert result.flushed == int(np.count_nonzero((reference(x) == 0) & (x != 0)))


def test_saturates_never_inf_and_keeps_nan() -> None:
    x = np.array([65504, 65519, 65520, 1e30, np.inf, -np.inf, np.nan, 2e-8, -2.9e-8, 6e-8], "<f4")
    result = cast_to_float16(x)
    assert not np.isinf(result.data).any()
    assert result.data[:6].tolist() == [65504, 65504, 65504, 65504, 65504, -65504]
    assert np.isnan(result.data[6])
    assert result.clipped == 5 and result.flushed == 2


def test_round_to_nearest_even() -> None:
    # 1 + 2**-11 lies halfway between 1 and the next float16 (1 + 2**-10): ties go to even (1.0).
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11], "<f4")
    assert cast_to_float16(x).data.tolist() == [1.0, 1 + 2 * 2**-10]


def test_several_chunks_and_raw_bytes() -> None:
    x = np.random.default_rng(0).standard_normal(CHUNK_ELEMENTS * 2 + 17).astype("<f4") * 1e5
    result = cast_to_float16(x.view(np.uint8))  # buffer data arrives as bytes
    assert np.array_equal(result.data.view("<u2"), reference(x).view("<u2"))
    assert result.clipped == int(np.count_nonzero(np.abs(x) > 65504))


def test_lazy_cast_in_parallel_blocks_equals_the_whole_cast() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tflite_fp16.cast import BLOCK_ELEMENTS, Float16Cast

    rng = np.random.default_rng(1)
    x = (rng.standard_normal(BLOCK_ELEMENTS * 2 + 1234) * 3e4).astype("<f4")
    x[::1000] = 1e-9
    lazy = Float16Cast(x.view(np.uint8))
    assert lazy.nbytes == x.size * 2
    with ThreadPoolExecutor(2) as executor:
        blocks = list(lazy.blocks(executor, in_flight=2))
    assert len(blocks) == 3
    assert np.array_equal(np.concatenate(blocks).view("<u2"), reference(x).view("<u2"))
    assert lazy.counts.clipped == int(np.count_nonzero(np.abs(x) > 65504))
    assert lazy.counts.flushed == int(np.count_nonzero((reference(x) == 0) & (x != 0)))


def test_batch_of_small_casts() -> None:
    from tflite_fp16.cast import Float16Cast, cast_batch

    arrays = [np.array(v, "<f4") for v in ([1.0, 7e4], [], [3e-9, -2.5], [65520.0])]
    casts = [Float16Cast(a) for a in arrays]
    cast_batch(casts)
    for a, c in zip(arrays, casts):
        assert np.array_equal(c.array().view("<u2"), reference(a).view("<u2"))
    assert sum(c.counts.clipped for c in casts) == 2 and sum(c.counts.flushed for c in casts) == 1
