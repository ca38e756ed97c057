"""Text that leaves the tool: names from a model file quoted before they reach a message or a
terminal, and numbers as JSON can hold them."""

from __future__ import annotations

import math

__all__ = ["json_number", "quote"]

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(name: str, limit: int = 200) -> str:
    """``name`` in single quotes, with control and non-printable characters escaped
    (so a message stays on one line and a file cannot send terminal control
    sequences) and shortened past ``limit`` characters.

    >>> print(quote("dense/MatMul"))
    'dense/MatMul'
    >>> print(quote("evil\\x1b[2Jname\\n"))
    'evil\\x1b[2Jname\\n'
    """
    if len(name) > limit:
        name = name[:limit] + "\u2026"
    out = []
    for char in name:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "'" + "".join(out) + "'"


def json_number(value: float) -> float | str:
    """A float as JSON can hold it: non-finite values become the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
