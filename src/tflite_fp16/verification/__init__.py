"""Run the original and the converted model in LiteRT and compare their outputs.

LiteRT (``ai_edge_litert``, the ``[verify]`` extra) runs in a child process
(:mod:`~tflite_fp16.verification.worker`, the only module that imports it), started
when a verification starts: ``import tflite_fp16`` never loads it, and a crash
inside it becomes an error, never the end of the caller's process.

* :mod:`~tflite_fp16.verification.verifier`: :class:`Verifier` and :func:`verify`
* :mod:`~tflite_fp16.verification.samples`: the user's arrays, checked before they are loaded; the probes
* :mod:`~tflite_fp16.verification.metrics`: the numbers a verdict is made of
* :mod:`~tflite_fp16.verification.results`: :class:`VerifyReport` and its rules
* :mod:`~tflite_fp16.verification.layers`: where the error enters
* :mod:`~tflite_fp16.verification.plot`: the picture (``[plot]`` extra)

>>> from tflite_fp16 import rewrite
>>> _ = rewrite("examples/small_cnn.tflite", "small_cnn_fp16.tflite")
>>> report = verify("examples/small_cnn.tflite", "small_cnn_fp16.tflite")
>>> report.passed, f"{report.worst_rel_l2_error:.1e}"
(True, '1.1e-04')
"""

from __future__ import annotations

from .metrics import Difference, compare_outputs
from .results import BREAKAGE_BOUND, LayerComparison, OutputComparison, VerifyReport
from .samples import MAX_SAMPLES, PROBES, load_inputs
from .session import DEFAULT_TIMEOUT, INSTALL_HINT
from .verifier import Check, Verifier, verify

__all__ = [
    "BREAKAGE_BOUND",
    "DEFAULT_TIMEOUT",
    "INSTALL_HINT",
    "MAX_SAMPLES",
    "PROBES",
    "Check",
    "Difference",
    "LayerComparison",
    "OutputComparison",
    "Verifier",
    "VerifyReport",
    "compare_outputs",
    "load_inputs",
    "verify",
]
