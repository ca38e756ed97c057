"""tflite-fp16: rewrite a float32 TensorFlow Lite model as float16, without TensorFlow.

>>> from tflite_fp16 import rewrite
>>> report = rewrite("examples/small_cnn.tflite", "small_cnn_fp16.tflite")
>>> print(report.summary())
10 tensors converted to float16; 20,520 -> 15,024 bytes (73.2%)

The public names are loaded on first use, so that ``import tflite_fp16`` (and
the command's start-up) stays light; ``verify`` runs LiteRT (the ``[verify]``
extra) in a child process, only when it is called. Type checkers see every
name with its real signature.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    InputChangedError,
    InputNotFoundError,
    InvalidInputsError,
    InvalidModelError,
    LossyModelError,
    MissingDependencyError,
    OutputError,
    RewriteError,
    Tflite16Warning,
    UnsupportedModelError,
    VerificationError,
)
from .version import __version__ as __version__

if TYPE_CHECKING:  # pragma: no cover
    from .api import check_many, plan_bytes, plan_file, rewrite, rewrite_bytes, rewrite_many
    from .conversion.plan import KeptTensor, Plan
    from .options import Options, OptionsArguments
    from .report import ConvertedTensor, Report
    from .tools.auto import SearchResult
    from .tools.batch import BatchResult, CheckResult
    from .tools.inspect import inspect_bytes, inspect_file
    from .tools.widen import WidenReport, widen, widen_bytes
    from .verification import VerifyReport, verify

__all__ = [
    "BatchResult",
    "CheckResult",
    "ConvertedTensor",
    "InputChangedError",
    "InputNotFoundError",
    "InvalidInputsError",
    "InvalidModelError",
    "KeptTensor",
    "LossyModelError",
    "MissingDependencyError",
    "Options",
    "OptionsArguments",
    "OutputError",
    "Plan",
    "Report",
    "RewriteError",
    "SearchResult",
    "Tflite16Warning",
    "UnsupportedModelError",
    "VerificationError",
    "VerifyReport",
    "WidenReport",
    "check_many",
    "inspect_bytes",
    "inspect_file",
    "plan_bytes",
    "plan_file",
    "rewrite",
    "rewrite_bytes",
    "rewrite_many",
    "verify",
    "widen",
    "widen_bytes",
]
_LAZY = {
    "rewrite": "api",
    "rewrite_bytes": "api",
    "plan_file": "api",
    "plan_bytes": "api",
    "inspect_bytes": "tools.inspect",
    "rewrite_many": "api",
    "check_many": "api",
    "Report": "report",
    "ConvertedTensor": "report",
    "Options": "options",
    "OptionsArguments": "options",
    "Plan": "conversion.plan",
    "KeptTensor": "conversion.plan",
    "SearchResult": "tools.auto",
    "BatchResult": "tools.batch",
    "CheckResult": "tools.batch",
    "widen": "tools.widen",
    "widen_bytes": "tools.widen",
    "WidenReport": "tools.widen",
    "inspect_file": "tools.inspect",
    "verify": "verification",
    "VerifyReport": "verification",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tflite_fp16' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
