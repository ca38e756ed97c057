"""The picture: the error along the graph for each output, and the tolerance search's trade-off.

The only module that imports matplotlib (the ``[plot]`` extra), when a plot is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from ..errors import MissingDependencyError
from ..text import quote
from .results import VerifyReport

__all__ = ["PLOT_HINT", "plot_png"]

PLOT_HINT = "pip install 'tflite-fp16[plot]'"
_FLOOR = 1e-9  # errors of exactly 0 are drawn here on the log scale


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise MissingDependencyError(f"--plot needs matplotlib, which is not installed: {PLOT_HINT}") from None
    return pyplot


def plot_png(
    verification: VerifyReport | None,
    curve: Sequence[tuple[int, float]] = (),
    tolerance: float | None = None,
) -> bytes:
    """A PNG of the per-layer relative L2 error along the graph, one panel per output (log scale,
    the limit as a line, operators that read a constant kept float32 marked), and, given
    ``curve`` (bytes kept float32, worst error) from a tolerance search, a panel of that."""
    pyplot = _pyplot()
    panels: list[tuple[str, list[int]]] = []
    if verification is not None and verification.layers:
        panels = [(name, list(positions)) for name, positions in verification.layer_paths if positions]
    count = len(panels) + (1 if curve else 0)
    if count == 0:
        raise ValueError("nothing to plot: no layer comparison and no search curve")
    figure, axes = pyplot.subplots(count, 1, figsize=(10, 3.2 * count), squeeze=False)
    row = 0
    if verification is not None:
        worst = verification.worst
        limit = worst.limit if worst is not None else verification.tolerance
        for name, positions in panels:
            axis = axes[row][0]
            layers = [verification.layers[p] for p in positions]
            x = list(range(len(layers)))
            y = [max(layer.rel_l2_error, _FLOOR) if math.isfinite(layer.rel_l2_error) else 1e3 for layer in layers]
            axis.plot(x, y, marker=".", linewidth=1, label="relative L2 error of each tensor")
            kept = [i for i, layer in enumerate(layers) if layer.kept_float32]
            if kept:
                axis.scatter(
                    kept,
                    [y[i] for i in kept],
                    marker="s",
                    color="tab:green",
                    zorder=3,
                    label="reads a constant kept float32",
                )
            broken = [i for i, layer in enumerate(layers) if layer.new_nonfinite]
            if broken:
                axis.scatter(
                    broken, [y[i] for i in broken], marker="x", color="tab:red", zorder=3, label="new non-finite values"
                )
            axis.axhline(limit, color="tab:orange", linestyle="--", label=f"limit {limit:g}")
            axis.set_yscale("log")
            axis.set_xlabel(f"tensors in execution order ({verification.layers_sample})")
            axis.set_ylabel("relative L2 error")
            axis.set_title(f"output {quote(name)}")
            axis.legend(loc="upper left", fontsize="small")
            row += 1
    if curve:
        axis = axes[row][0]
        kept_bytes = [b for b, _ in curve]
        errors = [max(e, _FLOOR) if math.isfinite(e) else 1e3 for _, e in curve]
        axis.plot(kept_bytes, errors, marker="o", linestyle="none")
        if tolerance is not None:
            axis.axhline(tolerance, color="tab:orange", linestyle="--", label=f"tolerance {tolerance:g}")
            axis.legend(loc="upper right", fontsize="small")
        axis.set_yscale("log")
        axis.set_xlabel("bytes kept float32")
        axis.set_ylabel("worst error")
        axis.set_title("tolerance search: error against bytes kept float32")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()
