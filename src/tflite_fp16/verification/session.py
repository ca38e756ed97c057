"""The parent's side of LiteRT's child process (:mod:`tflite_fp16.verification.worker`).

One child per verification, started on the first request and restarted after a crash;
requests and answers go through a pair of pipes, models as a path (the file) or as
bytes, each once. A crash, a signal or a timeout in the child becomes a
:class:`LiteRTFailure` naming it; the caller's process is never at risk.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, Literal

from ..errors import MissingDependencyError

__all__ = ["DEFAULT_TIMEOUT", "INSTALL_HINT", "LiteRTFailure", "LiteRTSession", "ModelSource", "model_source"]

INSTALL_HINT = "pip install 'tflite-fp16[verify]'"
DEFAULT_TIMEOUT = 600.0  # seconds one request may take (one model on every sample)
ModelSource = tuple[str, Any]  # ("path", str) or ("bytes", bytes)
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the folder that holds tflite_fp16


class LiteRTFailure(Exception):
    """LiteRT could not do what was asked: an error it raised (``kind`` "error"), the child killed
    by a signal ("crash") or out of time ("timeout"). The message says which, with LiteRT's own
    error lines."""

    def __init__(self, kind: Literal["error", "crash", "timeout"], message: str) -> None:
        super().__init__(message)
        self.kind = kind


def model_source(model: str | os.PathLike[str] | bytes | bytearray | memoryview) -> ModelSource:
    """How a model goes to the child: by path, or its bytes (sent once)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return ("bytes", bytes(model))
    return ("path", os.fspath(model))


class LiteRTSession:
    """A child process running LiteRT, answering one request at a time."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.requests: Connection | None = None
        self.replies: Connection | None = None
        self.stderr: IO[bytes] | None = None
        # Requests that set the child's state (the samples), sent again to a restarted child.
        self.state: list[tuple[str, tuple[Any, ...]]] = []
        if importlib.util.find_spec("ai_edge_litert") is None:
            raise MissingDependencyError(f"verification needs LiteRT, which is not installed: {INSTALL_HINT}")

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self.stderr = tempfile.TemporaryFile()
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, environment.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tflite_fp16.verification.worker",
                    str(request_read),
                    str(reply_write),
                    str(os.getpid()),
                ],
                pass_fds=(request_read, reply_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.stderr,
                env=environment,
            )
        finally:
            os.close(request_read)
            os.close(reply_write)
        self.requests = Connection(request_write, readable=False)
        self.replies = Connection(reply_read, writable=False)
        status, detail = self._receive("start")
        if status == "missing":
            self.close()
            raise MissingDependencyError(
                f"verification needs LiteRT, which cannot be imported ({detail}): {INSTALL_HINT}"
            )
        for name, arguments in self.state:
            self._exchange(name, arguments)

    def _native_lines(self, since: int) -> str:
        """What LiteRT wrote to the child's stderr since ``since`` (its error details), in one line."""
        if self.stderr is None:
            return ""
        self.stderr.seek(since)
        text = self.stderr.read(1 << 16).decode("utf-8", "replace")
        self.stderr.seek(0, os.SEEK_END)
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("INFO: ")]
        return "; ".join(dict.fromkeys(lines))

    def _receive(self, what: str) -> tuple[str, Any]:
        assert self.replies is not None and self.process is not None
        try:
            if not self.replies.poll(self.timeout):
                self.kill()
                self.process.wait()
                self._reset()
                raise LiteRTFailure("timeout", f"LiteRT did not finish {what} within {self.timeout:g} s")
            reply: tuple[str, Any] = self.replies.recv()
            return reply
        except (EOFError, OSError):
            return self._crashed(what)

    def _crashed(self, what: str) -> tuple[str, Any]:
        assert self.process is not None
        try:
            status = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            status = self.process.wait()
        native = self._native_lines(0)
        self._reset()
        if status < 0:
            try:
                name = signal.Signals(-status).name
            except ValueError:
                name = f"signal {-status}"
            cause = f"LiteRT crashed ({name}) during {what}"
        else:
            cause = f"LiteRT's process ended (exit status {status}) during {what}"
        raise LiteRTFailure("crash", cause + (f": {native}" if native else ""))

    def _exchange(self, name: str, arguments: tuple[Any, ...]) -> Any:
        assert self.requests is not None and self.stderr is not None
        since = self.stderr.seek(0, os.SEEK_END)
        try:
            self.requests.send((name, arguments))
        except (BrokenPipeError, OSError):
            self._crashed(name)
        status, result = self._receive(name)
        if status == "error":
            native = self._native_lines(since)
            raise LiteRTFailure("error", result + (f" ({native})" if native and native not in result else ""))
        return result

    def request(self, name: str, *arguments: Any, keep: bool = False) -> Any:
        """Send request ``name`` and return its answer. ``keep``: the request sets the child's state
        (the samples), so it is sent again to a restarted child."""
        if self.process is None:
            self._start()
        result = self._exchange(name, arguments)
        if keep:
            self.state = [(n, a) for n, a in self.state if n != name] + [(name, arguments)]
        return result

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def _reset(self) -> None:
        for connection in (self.requests, self.replies):
            if connection is not None:
                connection.close()
        if self.stderr is not None:
            self.stderr.close()
        self.process, self.requests, self.replies, self.stderr = None, None, None, None

    def close(self) -> None:
        """End the child: its pipe closes, it exits; killed if it does not within a few seconds."""
        process = self.process
        if process is None:
            return
        if self.requests is not None:
            self.requests.close()
            self.requests = None
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._reset()

    def __del__(self) -> None:
        self.kill()
