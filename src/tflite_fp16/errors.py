"""Exceptions raised by tflite-fp16. Every one derives from :class:`RewriteError`."""

from __future__ import annotations

from typing import Any

__all__ = [
    "InputChangedError",
    "InputNotFoundError",
    "InvalidInputsError",
    "InvalidModelError",
    "LossyModelError",
    "MissingDependencyError",
    "OutputError",
    "RewriteError",
    "Tflite16Warning",
    "UnsupportedModelError",
    "VerificationError",
]


class RewriteError(Exception):
    """Base class of every error tflite-fp16 raises on purpose."""


class InvalidModelError(RewriteError, ValueError):
    """The input is not a readable TFLite model (empty, truncated, wrong
    identifier, an offset, length or index that points outside the file)."""


class UnsupportedModelError(RewriteError):
    """The input is a valid TFLite model that tflite-fp16 cannot rewrite
    without losing something; the message says what."""


class LossyModelError(RewriteError, ValueError):
    """``lossy="error"``: some float32 constants cannot be stored as float16
    faithfully; the message names each one and why."""


class VerificationError(RewriteError):
    """The converted model's outputs differ from the original's by more than
    the tolerance, or have non-finite values the original does not have.
    ``report`` is the :class:`~tflite_fp16.verification.VerifyReport` and, with ``auto``,
    ``search`` the :class:`~tflite_fp16.tools.auto.SearchResult`; no output was written."""

    def __init__(self, message: str, report: Any, search: Any = None) -> None:
        super().__init__(message)
        self.report = report
        self.search = search  # the tolerance search's result, when --auto ran

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.report, self.search))


class MissingDependencyError(RewriteError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""


class InvalidInputsError(RewriteError, ValueError):
    """Inputs given for verification (an ``.npz`` file or arrays) do not fit the
    model: a missing name, a wrong shape or type; the message says which."""


class InputNotFoundError(InvalidModelError, FileNotFoundError):
    """The input file does not exist."""


class InputChangedError(RewriteError):
    """The input file changed (or was truncated) while it was being read; nothing was written."""


class OutputError(RewriteError, OSError):
    """The output cannot be written: a missing or read-only directory, a directory or a
    non-regular file in its place, a full disk. The message names the user's path."""


class Tflite16Warning(UserWarning):
    """What a conversion warns about (an option that matched nothing, a lossy constant converted,
    a keep-file entry that kept nothing), issued through :mod:`warnings` as well as listed in
    ``report.warnings``, so that a pipeline can turn them into errors
    (``warnings.simplefilter("error", Tflite16Warning)``)."""
