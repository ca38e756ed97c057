"""Keep files: the tensors to keep float32, as ``--save-keep`` writes them and ``--keep-from`` reads them.

Format 2 (what this version writes)::

    # tflite-fp16 keep file 2
    # any comment line
    exact<TAB>NAME<TAB>shape=16,16<TAB>sha256=0123456789abcdef
    pattern<TAB>PATTERN

Each line says what it is: an ``exact`` tensor name, with the tensor's shape and the
first 16 hex digits of the SHA-256 of its float32 data, or an ``fnmatch`` ``pattern``.
Names and patterns are escaped: a backslash, a tab, and every character that is not
printable (line breaks of any kind among them: ``\\n``, ``\\r``, ``\\x0c``, ``\\x1c``,
``\\x85``, ``\\u2028`` ...) become backslash escapes (``\\\\``, ``\\t``, ``\\xHH``,
``\\uHHHH``, ``\\UHHHHHHHH``), so any name, blank or starting with ``#`` included,
stays on its line and reads back exactly. Lines are split on ``\\n`` alone.

An exact entry keeps the FLOAT32 constant of that name, shape and data. When no
tensor has all three, it keeps the tensor of that shape and data under another name
(a re-export that renumbered its tensors, as PyTorch exports do with
``arith.constantN``), and when a tensor of that name holds other data now, it keeps
nothing and says so: it never keeps the wrong tensor silently.

Format 1 (earlier versions: one name or pattern a line, ``#`` comments) is still read,
every line as a pattern.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from .errors import InvalidInputsError
from .text import quote

__all__ = ["HEADER", "KeepEntry", "content_digest", "escape", "read_keep_file", "render_keep_file", "unescape"]

HEADER = "# tflite-fp16 keep file 2"
_SIMPLE = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNSIMPLE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_HEX_LENGTH = {"x": 2, "u": 4, "U": 8}


class KeepEntry(NamedTuple):
    """One line of a keep file: an exact name (with the tensor's shape and data digest) or a pattern."""

    kind: Literal["exact", "pattern"]
    text: str  # the name or the pattern
    shape: tuple[int, ...] | None = None  # exact entries: the tensor's shape
    digest: str | None = None  # exact entries: the first 16 hex digits of the SHA-256 of its float32 data


def content_digest(data: np.ndarray) -> str:
    """The first 16 hex digits of the SHA-256 of ``data``'s bytes."""
    return hashlib.sha256(np.ascontiguousarray(data).data).hexdigest()[:16]


def escape(text: str) -> str:
    """``text`` on one line, nothing lost: backslash escapes for ``\\``, tab and every non-printable character."""
    out = []
    for char in text:
        simple = _SIMPLE.get(char)
        if simple is not None:
            out.append(simple)
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def unescape(text: str) -> str:
    """The inverse of :func:`escape`; ValueError for a malformed escape."""
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(text):
            raise ValueError("a backslash ends the text")
        code = text[i + 1]
        if code in _UNSIMPLE:
            out.append(_UNSIMPLE[code])
            i += 2
        elif code in _HEX_LENGTH:
            digits = text[i + 2 : i + 2 + _HEX_LENGTH[code]]
            if len(digits) != _HEX_LENGTH[code] or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"\\{code} needs {_HEX_LENGTH[code]} hex digits")
            out.append(chr(int(digits, 16)))
            i += 2 + len(digits)
        else:
            raise ValueError(f"unknown escape \\{code}")
    return "".join(out)


def render_keep_file(entries: Sequence[KeepEntry], comment: str = "") -> str:
    """The text of a format-2 keep file holding ``entries`` (``comment``: one more comment line)."""
    lines = [HEADER]
    if comment:
        lines.append(f"# {escape(comment)}")
    for entry in entries:
        if entry.kind == "pattern":
            lines.append(f"pattern\t{escape(entry.text)}")
        else:
            shape = ",".join(str(d) for d in entry.shape or ())
            lines.append(f"exact\t{escape(entry.text)}\tshape={shape}\tsha256={entry.digest or ''}")
    return "\n".join(lines) + "\n"


def _parse_exact(fields: list[str], where: str) -> KeepEntry:
    name = unescape(fields[1])
    shape: tuple[int, ...] | None = None
    digest: str | None = None
    for field in fields[2:]:
        key, _, value = field.partition("=")
        if key == "shape":
            shape = tuple(int(d) for d in value.split(",")) if value else ()
        elif key == "sha256":
            if len(value) != 16 or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(f"sha256 must be 16 hex digits, not {value!r}")
            digest = value
        else:
            raise ValueError(f"unknown field {key!r}")
    if shape is None or digest is None:
        raise ValueError("an exact entry needs shape= and sha256=")
    return KeepEntry("exact", name, shape, digest)


def read_keep_file(path: str | os.PathLike[str]) -> tuple[KeepEntry, ...]:
    """The entries of a keep file (format 2, or format 1: every line a pattern)."""
    shown = quote(os.fspath(path))
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except FileNotFoundError:
        raise InvalidInputsError(f"keep file {shown}: no such file") from None
    except UnicodeDecodeError as error:
        raise InvalidInputsError(f"keep file {shown} is not UTF-8 text: {error.reason} at byte {error.start}") from None
    except OSError as error:
        raise InvalidInputsError(f"keep file {shown} cannot be read: {error.strerror or error}") from None
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if not lines or lines[0] != HEADER:
        # Format 1: one name or pattern a line; blank lines and "#" comments skipped.
        return tuple(KeepEntry("pattern", line) for line in lines if line.strip() and not line.startswith("#"))
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        where = f"keep file {shown} line {number}"
        try:
            if fields[0] == "pattern" and len(fields) == 2:
                entries.append(KeepEntry("pattern", unescape(fields[1])))
            elif fields[0] == "exact" and len(fields) >= 2:
                entries.append(_parse_exact(fields, where))
            else:
                raise ValueError("a line is 'exact<TAB>NAME<TAB>shape=...<TAB>sha256=...' or 'pattern<TAB>PATTERN'")
        except ValueError as error:
            raise InvalidInputsError(f"{where}: {error}") from None
    return tuple(entries)
