"""Keep files: the tensors to keep float32, one name or ``fnmatch`` pattern a line.

``--save-keep`` writes one (what the tolerance search chose) and ``--keep-from``
reads it back, so that a search's result converts the same way without LiteRT.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .errors import InvalidInputsError
from .text import quote

__all__ = ["read_keep_file", "write_keep_file"]


def read_keep_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The patterns of a keep file: one tensor name or ``fnmatch`` pattern a line; blank lines
    and lines starting with ``#`` are ignored."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise InvalidInputsError(f"keep file {quote(os.fspath(path))}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputsError(f"keep file {quote(os.fspath(path))} cannot be read: {error}") from None
    return tuple(line for line in lines if line.strip() and not line.startswith("#"))


def write_keep_file(path: str | os.PathLike[str], header: str, patterns: Sequence[str]) -> None:
    """Write ``patterns`` one a line after the comment line ``header`` (what :func:`read_keep_file` reads)."""
    lines = [f"# {header}", *patterns]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
