"""Exceptions raised by tflite-fp16. Every one derives from :class:`RewriteError`."""

from __future__ import annotations

__all__ = ["RewriteError", "InvalidModelError", "UnsupportedModelError"]


class RewriteError(Exception):
    """Base class of every error tflite-fp16 raises on purpose."""


class InvalidModelError(RewriteError, ValueError):
    """The input is not a readable TFLite model (empty, truncated, wrong
    identifier, an offset, length or index that points outside the file)."""


class UnsupportedModelError(RewriteError):
    """The input is a valid TFLite model that tflite-fp16 cannot rewrite
    without losing something; the message says what."""
