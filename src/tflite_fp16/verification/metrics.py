"""How far one output is from another: the numbers every verdict is made of.

Errors are taken over the positions where the float32 output is finite; a
position finite there but not in the float16 output counts as a *new
non-finite value*, whatever the metric.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["METRICS", "Difference", "Metric", "compare_outputs"]

from ..options import METRICS, Metric


class Difference(NamedTuple):
    """``other`` against ``reference``, one output of one sample."""

    elements: int  # values of the output
    compared: int  # positions finite in the reference: the values there are to compare
    max_abs_error: float
    rel_l2_error: float  # ||other - reference|| / ||reference|| over positions finite in both
    cosine: float
    top1_mismatch: float  # share of rows (over the last axis) whose arg-max differs
    new_nonfinite: int  # positions finite in the reference where ``other`` is not

    def error(self, metric: Metric) -> float:
        """The error under ``metric``: rel_l2 and max_abs as they are, 1 - cosine, top1's mismatch share."""
        if metric == "rel_l2":
            return self.rel_l2_error
        if metric == "max_abs":
            return self.max_abs_error
        if metric == "cosine":
            return max(0.0, 1.0 - self.cosine)
        return self.top1_mismatch


def compare_outputs(reference: np.ndarray, other: np.ndarray) -> Difference:
    """The :class:`Difference` of ``other`` from ``reference``.

    An all-zero reference gives a relative error of 0 when ``other`` is zero there
    too, else inf; outputs of different shapes differ infinitely.

    >>> compare_outputs(np.array([3.0, 4.0]), np.array([3.0, 4.5])).rel_l2_error
    0.1
    """
    a = np.asarray(reference, np.float64)
    b = np.asarray(other, np.float64)
    if a.shape != b.shape:
        return Difference(int(a.size), int(a.size), math.inf, math.inf, 0.0, 1.0, 0)
    top1 = _top1_mismatch(a, b)
    a, b = a.reshape(-1), b.reshape(-1)
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    new_nonfinite = int(np.count_nonzero(finite_a & ~finite_b))
    compared = int(np.count_nonzero(finite_a))
    both = finite_a & finite_b
    if not both.all():
        a, b = a[both], b[both]
    difference = b - a
    max_abs = float(np.abs(difference).max()) if difference.size else 0.0
    norm_a, norm_b, norm_d = (float(np.linalg.norm(v)) for v in (a, b, difference))
    if norm_a > 0:
        rel = norm_d / norm_a
    else:
        rel = 0.0 if norm_d == 0 else math.inf
    if norm_a > 0 and norm_b > 0:
        cosine = float(np.dot(a, b) / (norm_a * norm_b))
    else:
        cosine = 1.0 if norm_a == norm_b else 0.0
    return Difference(int(np.size(reference)), compared, max_abs, rel, cosine, top1, new_nonfinite)


def _top1_mismatch(a: np.ndarray, b: np.ndarray) -> float:
    """The share of rows (the output reshaped to (-1, last axis)) whose arg-max differs; rows where
    the reference has a non-finite value are left out (there is no arg-max to agree with)."""
    if a.ndim == 0 or a.shape[-1] < 2 or a.size == 0:
        return 0.0
    rows_a, rows_b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    usable = np.isfinite(rows_a).all(axis=1)
    if not usable.any():
        return 0.0
    rows_b = np.where(np.isfinite(rows_b), rows_b, -np.inf)[usable]
    return float(np.mean(np.argmax(rows_a[usable], axis=1) != np.argmax(rows_b, axis=1)))
