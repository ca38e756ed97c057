"""Where the input comes from and the output goes, and how the output gets there safely.

* :func:`existing_input` and :func:`file_identity`: the input exists, and what changes when
  another program writes, replaces or truncates it while it is read.

* :func:`check_output` runs before any conversion work: the path must name a
  file (not a directory, FIFO or device) in an existing, writable directory.
  A symbolic link is written through (its target is replaced, the link kept),
  as ``cp`` and shell redirection do.
* :func:`atomic_write` writes a temporary file in the target's directory,
  starts its writeback to disk as it goes (so the final ``fsync`` has little
  left to do), fsyncs it, renames it over the target and fsyncs the directory:
  a crash or power loss leaves the old file or the new one, never a partial
  or empty one. On any exception (``KeyboardInterrupt`` and the termination
  signals the command turns into exceptions included) the temporary file is
  removed. Only ``SIGKILL`` (or a crash of the interpreter) can leave one: it
  is named ``.tflite-fp16.<host>.<pid>.<random>.tmp``, and a later run that
  writes into the same directory removes those whose process is gone.

Every message names the user's path, not the temporary file.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TypeVar, Union

from ..errors import InputNotFoundError, InvalidModelError, OutputError
from ..text import quote

__all__ = [
    "TEMP_PREFIX",
    "OutputTarget",
    "atomic_write",
    "check_output",
    "check_side_outputs",
    "commit_guard",
    "existing_input",
    "file_identity",
    "pause_for_tests",
    "same_file",
    "same_path",
    "temp_listeners",
]

PathLike = Union[str, "os.PathLike[str]"]
TEMP_PREFIX = ".tflite-fp16."
TEMP_SUFFIX = ".tmp"
_WRITEBACK_BYTES = 32 << 20  # start writeback of what was written every 32 MiB
_HOST = socket.gethostname().replace(".", "_") or "host"
_T = TypeVar("_T")

#: Called with ("created" | "gone", path) for every temporary file; the command's supervisor
#: process listens, so that it can remove the file if the worker dies by a signal it cannot catch.
temp_listeners: list[Callable[[str, str], None]] = []

#: When set, every commit (the rename of a complete temporary file over its target) runs through
#: it: ``commit_guard(rename, user_path)``. A batch worker sets one that refuses to commit once the
#: batch is stopping and reports each commit, so that the batch knows exactly what was written.
commit_guard: Callable[[Callable[[], None], str], None] | None = None


@dataclass(frozen=True)
class OutputTarget:
    """A checked output path: ``path`` as the user gave it, ``final`` the file that is replaced
    (the symlink's target for a symlink)."""

    path: str
    final: str

    @property
    def directory(self) -> str:
        return os.path.dirname(self.final) or "."


def existing_input(path: PathLike) -> PathLike:
    """``path``, when it names an existing regular file: :class:`InputNotFoundError` when it
    does not exist, :class:`InvalidModelError` for a directory, FIFO, socket or device (opening
    a FIFO would wait for a writer forever)."""
    shown = quote(os.fspath(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputNotFoundError(f"{shown}: no such file") from None
    except OSError as error:
        raise InvalidModelError(f"{shown} cannot be read: {error.strerror or error}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InvalidModelError(
            f"{shown} is a directory, not a TFLite model (several models: -o DIR or --in-place; Python: rewrite_many)"
        )
    if not stat.S_ISREG(info.st_mode):
        raise InvalidModelError(f"{shown} is not a regular file (a FIFO, socket or device); give a model file")
    return path


def same_path(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once links are resolved, or the same
    existing file (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return same_file(a, b)


def check_side_outputs(
    outputs: Sequence[tuple[str, PathLike | None]], taken: Sequence[tuple[str, PathLike | None]]
) -> None:
    """Check the side outputs (``(role, path)``: the JSON report, the keep file, the plot) before
    any work, as :func:`check_output` checks the model's, and that none is one of ``taken`` (the
    input, the model written) or another side output. ``-`` (standard output) and None are skipped."""
    seen = [(role, path) for role, path in taken if path is not None and os.fspath(path) != "-"]
    for role, path in outputs:
        if path is None or os.fspath(path) == "-":
            continue
        check_output(path)
        for other_role, other in seen:
            if same_path(path, other):
                raise OutputError(
                    f"cannot write {quote(os.fspath(path))}: it is also the {other_role}; give the {role} a path of its own"
                )
        seen.append((role, path))


def file_identity(path: PathLike, missing_ok: bool = False) -> tuple[int, ...]:
    """(size, modification time, inode, device): what changes when a file is written, replaced or
    truncated. A missing file is ``()`` with ``missing_ok``, else :class:`InputNotFoundError`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return ()
        raise InputNotFoundError(f"{quote(os.fspath(path))}: no such file") from None
    return info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _fail(path: str, message: str, cause: OSError | None = None) -> OutputError:
    error = OutputError(f"cannot write {quote(path)}: {message}")
    if cause is not None:
        error.errno = cause.errno
    return error


def check_output(path: PathLike) -> OutputTarget:
    """Check that ``path`` can be written, before any work is done; raise :class:`OutputError` if not."""
    user = os.fspath(path)
    if user == "":
        raise _fail(user, "the output path is empty")
    final = os.path.realpath(user) if os.path.islink(user) else os.path.abspath(user)
    try:
        info: os.stat_result | None = os.stat(final)
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise _fail(user, error.strerror or str(error), error) from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise _fail(
                user,
                "it is a directory; give the output file's name (for example "
                f"{quote(os.path.join(user, 'model_fp16.tflite'))})",
            )
        if not stat.S_ISREG(info.st_mode):
            raise _fail(user, "it exists and is not a regular file (a FIFO, socket or device); refusing to replace it")
    directory = os.path.dirname(final) or "."
    if not os.path.isdir(directory):
        raise _fail(user, f"the directory {quote(directory)} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise _fail(user, f"no permission to create files in {quote(directory)}")
    return OutputTarget(user, final)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str) -> list[str]:
    """Remove temporary files this tool left in ``directory`` on this host from processes that are gone."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            continue
        parts = name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)].split(".")
        if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or _process_alive(pid):
            continue
        try:
            os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            pass
    return removed


class _Durable:
    """A binary file that starts writing its pages back to disk every 32 MiB, so that the
    final fsync waits for little (``posix_fadvise(DONTNEED)`` starts the writeback on Linux)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.written = 0
        self.synced = 0
        self.advise = getattr(os, "posix_fadvise", None)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        count = self.handle.write(data)
        self.written += count
        if self.advise is not None and self.written - self.synced >= _WRITEBACK_BYTES:
            self.handle.flush()
            try:
                self.advise(self.handle.fileno(), self.synced, self.written - self.synced, os.POSIX_FADV_DONTNEED)
            except OSError:
                self.advise = None
            self.synced = self.written
        return count

    def flush(self) -> None:
        self.handle.flush()


def pause_for_tests(point: str, path: str = "") -> None:
    """A seam for the signal tests: with TFLITE_FP16_TEST_PAUSE=<point>:<flag file>[:<part>],
    write this process's id to the flag file at ``point`` (for an output whose ``path`` holds
    ``part``, when given) and wait (at most 60 s) until the test removes it."""
    setting = os.environ.get("TFLITE_FP16_TEST_PAUSE", "")
    wanted, _, rest = setting.partition(":")
    flag, _, part = rest.partition(":")
    if wanted != point or not flag or (part and part not in path):
        return
    with open(flag, "w") as handle:
        handle.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)


def atomic_write(
    target: OutputTarget, fill: Callable[[BinaryIO], _T], before_commit: Callable[[str], None] | None = None
) -> _T:
    """Write ``target`` through a temporary file renamed over it only when complete, durable
    (fsynced, then the directory fsynced) and accepted by ``before_commit(temporary_path)``.
    On any failure the temporary file is removed and the target is untouched."""
    directory = target.directory
    remove_stale_temporaries(directory)
    try:
        fd, temporary = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{_HOST}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=directory
        )
    except OSError as error:
        raise _fail(target.path, error.strerror or str(error), error) from None
    for listener in temp_listeners:
        listener("created", temporary)
    try:
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
                pause_for_tests("write", target.path)
                result = fill(_Durable(handle))  # type: ignore[arg-type]
                handle.flush()
                os.fsync(handle.fileno())
            _set_mode(temporary, target.final)
        except OSError as error:
            if isinstance(error, OutputError):
                raise
            raise _fail(target.path, error.strerror or str(error), error) from None
        if before_commit is not None:
            before_commit(temporary)
        pause_for_tests("commit", target.path)
        try:
            if commit_guard is None:
                os.replace(temporary, target.final)
            else:
                commit_guard(lambda: os.replace(temporary, target.final), target.path)
        except OSError as error:
            raise _fail(target.path, error.strerror or str(error), error) from None
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    finally:
        for listener in temp_listeners:
            listener("gone", temporary)
    _sync_directory(directory)
    return result


def _set_mode(temporary: str, final: str) -> None:
    """The replaced file's permission bits (without setuid/setgid), or the umask's default."""
    try:
        mode = stat.S_IMODE(os.stat(final).st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temporary, mode)


def _sync_directory(directory: str) -> None:
    """Make the rename durable. Some file systems cannot fsync a directory; that is not an error."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EROFS):
            raise
    finally:
        os.close(fd)
