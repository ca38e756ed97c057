"""tflite-fp16: rewrite a float32 TensorFlow Lite model as float16, without TensorFlow.

>>> from tflite_fp16 import rewrite
>>> report = rewrite("model.tflite", "model_fp16.tflite")   # doctest: +SKIP
>>> print(report.summary())                                  # doctest: +SKIP

``verify`` (LiteRT, the ``[verify]`` extra) is imported only when it is used.
"""

from typing import Any

from .api import ConvertedTensor, Report, plan_file, rewrite, rewrite_bytes
from .errors import (
    InvalidInputsError, InvalidModelError, LossyModelError, MissingDependencyError, RewriteError,
    UnsupportedModelError, VerificationError,
)
from .options import Options
from .plan import KeptTensor, Plan

__all__ = [
    "rewrite", "rewrite_bytes", "plan_file", "verify", "Options", "Report", "Plan", "ConvertedTensor", "KeptTensor",
    "RewriteError", "InvalidModelError", "UnsupportedModelError", "LossyModelError", "VerificationError",
    "MissingDependencyError", "InvalidInputsError",
]
__version__ = "0.1.0"


def verify(*args: Any, **kwargs: Any) -> Any:
    """Run the original and the converted model in LiteRT and compare their outputs;
    see :func:`tflite_fp16.verify.verify` (imported on first use)."""
    from .verify import verify as _verify

    return _verify(*args, **kwargs)
