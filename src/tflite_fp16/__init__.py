"""tflite-fp16: rewrite a float32 TensorFlow Lite model as float16, without TensorFlow.

>>> from tflite_fp16 import rewrite
>>> report = rewrite("model.tflite", "model_fp16.tflite")   # doctest: +SKIP
>>> print(report.summary())                                  # doctest: +SKIP
"""

from .api import Report, plan_file, rewrite
from .errors import InvalidModelError, RewriteError, UnsupportedModelError
from .plan import Options, Plan

__all__ = ["rewrite", "plan_file", "Report", "Plan", "Options", "RewriteError", "InvalidModelError", "UnsupportedModelError"]
__version__ = "0.1.0"
