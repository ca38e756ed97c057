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
