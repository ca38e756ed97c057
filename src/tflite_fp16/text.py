"""Text that leaves the tool: names from a model file quoted before they reach a message or a
terminal, and numbers as JSON can hold them."""

from __future__ import annotations

import math

__all__ = ["json_number", "printable", "quote"]

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every control and non-printable character escaped (no quotes added): the last
    guard before a line reaches a terminal.

    >>> print(printable("ok \\x1b]0;title\\x07 done"))
    ok \\x1b]0;title\\x07 done
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    escaped = _ESCAPES.get(char)
    if escaped is not None:
        return escaped
    if ord(char) < 0x100:
        return f"\\x{ord(char):02x}"
    if ord(char) < 0x10000:
        return f"\\u{ord(char):04x}"
    return f"\\U{ord(char):08x}"


def quote(name: str, limit: int = 200) -> str:
    """``name`` in single quotes, with control and non-printable characters escaped
    (so a message stays on one line and a file cannot send terminal control
    sequences) and shortened past ``limit`` characters in the middle: names that share
    a long prefix (PyTorch exports name tensors by module path) differ at the end,
    which stays.

    >>> print(quote("dense/MatMul"))
    'dense/MatMul'
    >>> print(quote("torch/Sequential/Linear/weight_123", 20))
    'torch/Sequenti…ht_123'
    >>> print(quote("evil\\x1b[2Jname\\n"))
    'evil\\x1b[2Jname\\n'
    """
    if len(name) > limit:
        tail = max(1, limit // 3)
        name = name[: limit - tail] + "\u2026" + name[-tail:]
    out = [char if char.isprintable() and char not in _ESCAPES else _escape(char) for char in name]
    return "'" + "".join(out) + "'"


def counted(count: int, noun: str) -> str:
    """``1 tensor``, ``2 tensors``: a count and its noun (plural with an s)."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def json_number(value: float) -> float | str:
    """A float as JSON can hold it: non-finite values become the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
