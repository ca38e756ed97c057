"""tflite-fp16: rewrite a float32 TensorFlow Lite model as float16, without TensorFlow.

>>> from tflite_fp16 import rewrite
>>> report = rewrite("model.tflite", "model_fp16.tflite")   # doctest: +SKIP
>>> print(report.summary())                                  # doctest: +SKIP

The public names are loaded on first use, so that ``import tflite_fp16`` (and
the command's start-up) stays light; ``verify`` loads LiteRT (the
``[verify]`` extra) only when it is called.
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
    UnsupportedModelError,
    VerificationError,
)
from .version import __version__ as __version__

if TYPE_CHECKING:  # pragma: no cover
    from .api import check_many, plan_file, rewrite, rewrite_bytes, rewrite_many
    from .conversion.plan import KeptTensor, Plan
    from .options import Options
    from .report import ConvertedTensor, Report
    from .tools.inspect import inspect_file
    from .tools.widen import widen, widen_bytes

__all__ = [
    "ConvertedTensor",
    "InputChangedError",
    "InputNotFoundError",
    "InvalidInputsError",
    "InvalidModelError",
    "KeptTensor",
    "LossyModelError",
    "MissingDependencyError",
    "Options",
    "OutputError",
    "Plan",
    "Report",
    "RewriteError",
    "UnsupportedModelError",
    "VerificationError",
    "check_many",
    "inspect_file",
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
    "rewrite_many": "api",
    "check_many": "api",
    "Report": "report",
    "ConvertedTensor": "report",
    "Options": "options",
    "Plan": "conversion.plan",
    "KeptTensor": "conversion.plan",
    "widen": "tools.widen",
    "widen_bytes": "tools.widen",
    "inspect_file": "tools.inspect",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tflite_fp16' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:  # type: ignore[type-arg]
    return sorted(set(globals()) | set(_LAZY))


def verify(*args: Any, **kwargs: Any) -> Any:
    """Run the original and the converted model in LiteRT and compare their outputs;
    see :func:`tflite_fp16.verification.verify` (imported on first use)."""
    from .verification import verify as _verify

    return _verify(*args, **kwargs)
