"""Many models at once: the files of folders, run on worker processes or any executor.

:func:`find_models` lists the model files of files and folders (searched for ``*.tflite``
without following a symbolic link out of a folder); :func:`run_batch` runs one job per file:

* on worker processes of its own by default (``jobs`` at once, at most :data:`MAX_JOBS` and
  never more than the files). A worker that dies (killed, out of memory) fails its own file
  and is replaced; the others go on. Workers die with the command (``PR_SET_PDEATHSIG`` on
  Linux, and their end of a pipe closes). Every commit of an output is agreed with the
  parent first, so that once the batch is stopped (SIGINT, SIGTERM) no output is committed,
  and :class:`BatchInterrupted` lists exactly the files written before;
* or on any ``concurrent.futures.Executor`` (a Dask or Ray cluster's): a failed task fails its
  own file.

The public :func:`tflite_fp16.rewrite_many` and :func:`tflite_fp16.check_many` compose these
with the conversion.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..errors import (
    InvalidInputsError,
    InvalidModelError,
    LossyModelError,
    MissingDependencyError,
    OutputError,
    RewriteError,
    UnsupportedModelError,
)
from ..format import paths
from ..text import quote
from ..work import die_with_parent

__all__ = [
    "MAX_JOBS",
    "BatchInterrupted",
    "BatchResult",
    "CheckResult",
    "failure_of",
    "find_models",
    "run_batch",
]

PathLike = str | os.PathLike[str]
MAX_JOBS = 32  # worker processes at most, whatever -j says
_GRACE_SECONDS = 10.0  # how long stopped workers may take to clean up before they are killed
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)


@dataclass(frozen=True)
class BatchResult:
    """One input of :func:`rewrite_many`: its report, or why it failed."""

    input: str
    output: str | None
    report: Any = None  # a Report (a WidenReport with to="float32"); None when it failed
    error: str | None = None
    error_type: str | None = None
    bad_input: bool = False  # the failure is the input's (invalid, unsupported, lossy ...)
    exception: BaseException | None = field(default=None, compare=False, repr=False)  # what was raised, if any

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        """ "converted", "unchanged" (nothing to convert) or "failed"."""
        if self.error is not None:
            return "failed"
        return "unchanged" if self.report.unchanged else "converted"

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {
                "input": self.input,
                "output": self.output,
                "status": "failed",
                "error": {"type": self.error_type, "message": self.error, "bad_input": self.bad_input},
            }
        return {"input": self.input, "output": self.output, "status": self.status, "report": self.report.to_dict()}


@dataclass(frozen=True)
class CheckResult:
    """One input of :func:`check_many`: the tensors a rewrite would convert (none: it passes)."""

    input: str
    would_convert: tuple[str, ...] = ()  # tensor names
    error: str | None = None
    tensors: tuple[tuple[int, int], ...] = ()  # (subgraph, tensor) of each name

    @property
    def passes(self) -> bool:
        return self.error is None and not self.would_convert

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "passes": self.passes,
            "would_convert": list(self.would_convert),
            "tensors": [list(pair) for pair in self.tensors],
            "error": self.error,
        }


class BatchInterrupted(KeyboardInterrupt):
    """A batch stopped by a signal: ``written`` are the outputs committed before it stopped (after
    it, none is), ``results`` what finished."""

    def __init__(self, signum: int, written: Sequence[str], results: Sequence[BatchResult]) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.written = tuple(written)
        self.results = tuple(results)


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def find_models(inputs: Iterable[PathLike]) -> tuple[list[tuple[Path, Path]], list[BatchResult]]:
    """(file, path relative to its input) for every input file and every ``*.tflite`` under every
    input folder (in the order of the inputs, each folder's files in sorted order; a missing
    input is kept, to fail later), and the symbolic
    links inside folders that lead out of them, refused (they are not followed: an in-place
    conversion of a folder never writes outside it). A link to a file of the same folder is
    followed once, where its target is."""
    found: list[tuple[Path, Path]] = []
    refused: list[BatchResult] = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            found.append((path, Path(path.name)))
            continue
        root = os.path.realpath(path)
        seen: set[str] = set()
        links: list[tuple[Path, str]] = []
        in_folder: list[tuple[Path, Path]] = []
        for directory, folders, files in os.walk(path, followlinks=False):
            for name in sorted(folders):
                full = Path(directory) / name
                if full.is_symlink() and not _inside(os.path.realpath(full), root):
                    refused.append(_refused(full, "a symbolic link to a folder outside", path))
            for name in sorted(files):
                full = Path(directory) / name
                if not name.endswith(".tflite"):
                    continue
                if full.is_symlink():
                    links.append((full, os.path.realpath(full)))
                    continue
                seen.add(os.path.realpath(full))
                in_folder.append((full, full.relative_to(path)))
        for link, target in links:
            if not _inside(target, root):
                refused.append(_refused(link, "a symbolic link to a file outside", path))
            elif target not in seen and os.path.isfile(target):
                seen.add(target)
                in_folder.append((link, link.relative_to(path)))
        found.extend(sorted(in_folder, key=lambda entry: entry[1].parts))  # a folder's files in sorted order
    return found, refused


def _refused(link: Path, what: str, root: Path) -> BatchResult:
    return BatchResult(
        str(link),
        None,
        None,
        f"{what} {quote(str(root))}: not followed (give its target directly to convert it)",
        "InvalidModelError",
        True,
    )


def failure_of(source: str, target: str, error: BaseException) -> BatchResult:
    """The result of a file whose job raised ``error``: described in one line, a bug said to be one."""
    if isinstance(error, (RewriteError, OSError)):
        bad = isinstance(
            error,
            (InvalidModelError, UnsupportedModelError, LossyModelError, InvalidInputsError, MissingDependencyError),
        )
        return BatchResult(source, target, None, " ".join(str(error).split()), type(error).__name__, bad, error)
    return BatchResult(
        source,
        target,
        None,
        f"internal error: {type(error).__name__}: {error} (please report it)",
        type(error).__name__,
        False,
        error,
    )


Job = Callable[..., BatchResult]


def run_batch(
    inputs: Sequence[PathLike],
    out_dir: PathLike | None,
    in_place: bool,
    job: Job,
    arguments: tuple[Any, ...],
    *,
    jobs: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    progress: bool = False,
    on_result: Callable[[BatchResult], None] | None = None,
) -> list[BatchResult]:
    """``job(input, output, *arguments)`` for every model file of ``inputs``, writing to ``out_dir``
    (at the input's path relative to the folder it was found in) or, with ``in_place``, over
    the input. Returns one result per file (and per refused link), in input order. ``job`` must
    be a module-level function (workers import it by name, executors pickle it).

    Raises :class:`~tflite_fp16.errors.OutputError` when ``out_dir`` exists and is not a
    folder, and :class:`BatchInterrupted` when a signal stops the batch.
    """
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be an integer >= 1, not {jobs!r}")
    if out_dir is not None and os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(
            f"cannot write into {quote(os.fspath(out_dir))}: it is not a folder (-o takes a folder; for one model "
            f"give IN OUT)"
        )
    models, refused = find_models(inputs)
    results: dict[int, BatchResult] = {}
    work: list[tuple[int, str, str]] = []  # (position in the results, input, output)
    writers: dict[str, str] = {}  # output -> the input written there
    for i, (found, relative) in enumerate(models):
        target = str(found) if in_place else str(Path(out_dir or ".") / relative)
        key = os.path.abspath(target)
        if key in writers:
            results[i] = BatchResult(
                str(found), target, None, f"{quote(writers[key])} is written to the same output", "OutputError", False
            )
            continue
        writers[key] = str(found)
        work.append((i, str(found), target))
    bar = _progress(len(models) + len(refused), progress)
    for result in [*refused, *results.values()]:
        _report(result, on_result, bar)
    created = [] if in_place else _folders_for(t for _, _, t in work)
    try:
        workers = min(jobs or os.cpu_count() or 1, MAX_JOBS, len(work))
        if executor is not None:
            _on_executor(executor, work, job, arguments, results, on_result, bar)
        elif workers > 1:
            _Pool(workers, job, arguments).run(work, results, on_result, bar)
        else:
            _in_process(work, job, arguments, results, on_result, bar)
    finally:
        if bar is not None:
            bar.close()
        _remove_empty(created)
    return [*refused, *(results[i] for i in range(len(models)))]


def _folders_for(targets: Iterable[str]) -> list[str]:
    """Create the folders the outputs go to; the ones created, deepest first (to remove if empty)."""
    created: list[str] = []
    for target in targets:
        folder = os.path.dirname(os.path.abspath(target))
        missing = []
        while folder and not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            except OSError as error:
                raise OutputError(f"cannot create the folder {quote(path)}: {error.strerror or error}") from None
            created.append(path)
    return sorted(created, key=len, reverse=True)


def _remove_empty(folders: Sequence[str]) -> None:
    """Remove the folders this batch created and left empty (every input in them failed)."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _written(results: dict[int, BatchResult]) -> list[str]:
    """The outputs the finished jobs wrote (an unchanged model converted in place writes nothing)."""
    return [
        r.output
        for r in results.values()
        if r.ok and r.output is not None and not (r.report.unchanged and r.output == r.input)
    ]


def _in_process(
    work: list[tuple[int, str, str]],
    job: Job,
    arguments: tuple[Any, ...],
    results: dict[int, BatchResult],
    on_result: Callable[[BatchResult], None] | None,
    bar: Any,
) -> None:
    try:
        for i, source, target in work:
            results[i] = job(source, target, *arguments)
            _report(results[i], on_result, bar)
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, "signum", signal.SIGINT)
        raise BatchInterrupted(signum, _written(results), list(results.values())) from None


def _on_executor(
    executor: concurrent.futures.Executor,
    work: list[tuple[int, str, str]],
    job: Job,
    arguments: tuple[Any, ...],
    results: dict[int, BatchResult],
    on_result: Callable[[BatchResult], None] | None,
    bar: Any,
) -> None:
    futures = {executor.submit(job, source, target, *arguments): (i, source, target) for i, source, target in work}
    try:
        for future in concurrent.futures.as_completed(futures):
            i, source, target = futures[future]
            try:
                results[i] = future.result()
            except Exception as error:  # the task failed where it ran: its worker died, say
                results[i] = BatchResult(
                    source,
                    target,
                    None,
                    f"the worker converting it failed: {type(error).__name__}: {error}",
                    type(error).__name__,
                    False,
                    error,
                )
            _report(results[i], on_result, bar)
    except KeyboardInterrupt as interrupt:
        for future in futures:
            future.cancel()
        signum = getattr(interrupt, "signum", signal.SIGINT)
        raise BatchInterrupted(signum, _written(results), list(results.values())) from None


class _Worker:
    """One worker process and the job it runs."""

    def __init__(self, process: subprocess.Popen[bytes], requests: Connection, replies: Connection) -> None:
        self.process = process
        self.requests = requests
        self.replies = replies
        self.job: tuple[int, str, str] | None = None
        self.committing = False  # told it may commit, not yet told it did
        self.temporaries: set[str] = set()  # its temporary files: removed if it dies without cleaning up


class _Pool:
    """Worker processes of our own (see the module's docstring)."""

    def __init__(self, size: int, job: Job, arguments: tuple[Any, ...]) -> None:
        self.size = size
        self.function = f"{job.__module__}:{job.__qualname__}"
        try:
            self.arguments = pickle.dumps(arguments)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise TypeError(
                f"the options cannot go to worker processes ({error}): a check function must be a module-level "
                f"function, or use jobs=1"
            ) from None
        self.workers: list[_Worker] = []
        self.written: list[str] = []

    def _start(self) -> _Worker:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, environment.get("PYTHONPATH")]))
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tflite_fp16.tools.batch",
                    str(request_read),
                    str(reply_write),
                    str(os.getpid()),
                ],
                pass_fds=(request_read, reply_write),
                stdin=subprocess.DEVNULL,
                env=environment,
            )
        finally:
            os.close(request_read)
            os.close(reply_write)
        worker = _Worker(process, Connection(request_write, readable=False), Connection(reply_read, writable=False))
        self.workers.append(worker)
        return worker

    def run(
        self,
        work: list[tuple[int, str, str]],
        results: dict[int, BatchResult],
        on_result: Callable[[BatchResult], None] | None,
        bar: Any,
    ) -> None:
        pending = list(reversed(work))
        try:
            while pending or any(w.job is not None for w in self.workers):
                while pending and sum(1 for w in self.workers if w.job is None) == 0 and len(self.workers) < self.size:
                    self._start()
                for worker in self.workers:
                    if worker.job is None and pending:
                        worker.job = pending.pop()
                        _, source, target = worker.job
                        worker.requests.send(("job", self.function, source, target, self.arguments))
                for result in self._step(stopping=False):
                    results[result[0]] = result[1]
                    _report(result[1], on_result, bar)
        except KeyboardInterrupt as interrupt:
            signum = getattr(interrupt, "signum", signal.SIGINT)
            self._stop(results)
            raise BatchInterrupted(signum, self.written, list(results.values())) from None
        finally:
            self._close()

    def _step(self, stopping: bool, timeout: float | None = None) -> list[tuple[int, BatchResult]]:
        """Handle what the workers say (or that they died); the results that came in."""
        finished: list[tuple[int, BatchResult]] = []
        busy = {w.replies: w for w in self.workers}
        for connection in wait(list(busy), timeout):
            worker = busy[connection]  # type: ignore[index]
            try:
                message = worker.replies.recv()
            except (EOFError, OSError):
                finished.extend(self._died(worker))
                continue
            kind = message[0]
            if kind == "temp":
                _, event, path = message
                (worker.temporaries.add if event == "created" else worker.temporaries.discard)(path)
            elif kind == "commit?":
                allowed = not stopping
                worker.committing = allowed
                worker.requests.send(allowed)
            elif kind == "committed":
                worker.committing = False
                if worker.job is not None:
                    self.written.append(worker.job[2])
            elif kind == "done" and worker.job is not None:
                finished.append((worker.job[0], message[1]))
                worker.job = None
        return finished

    def _died(self, worker: _Worker) -> list[tuple[int, BatchResult]]:
        status = worker.process.wait()
        self.workers.remove(worker)
        worker.requests.close()
        worker.replies.close()
        for path in worker.temporaries:  # a worker killed by SIGKILL could not remove its own
            try:
                os.unlink(path)
            except OSError:
                pass
        if worker.job is None:
            return []
        i, source, target = worker.job
        if status < 0:
            try:
                how = f"killed by {signal.Signals(-status).name}"
            except ValueError:
                how = f"killed by signal {-status}"
            if -status == signal.SIGKILL:
                how += " (out of memory?)"
        else:
            how = f"ended with exit status {status}"
        if worker.committing:
            how += "; it was committing the output, which may be the new file or the old one"
        message = f"the process converting it died ({how}); the other files go on"
        return [(i, BatchResult(source, target, None, message, "WorkerDied", False))]

    def _stop(self, results: dict[int, BatchResult]) -> None:
        """No more commits; end the workers (they clean up their temporary files) and learn exactly
        which outputs were committed until then."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _GRACE_SECONDS
        while self.workers and time.monotonic() < deadline:
            for index, result in self._step(stopping=True, timeout=0.2):
                results[index] = result
        for worker in self.workers:
            worker.process.kill()

    def _close(self) -> None:
        for worker in list(self.workers):
            worker.requests.close()  # the worker's next read ends: it exits
        for worker in list(self.workers):
            try:
                worker.process.wait(timeout=_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.replies.close()
        self.workers.clear()


def _report(result: BatchResult, on_result: Callable[[BatchResult], None] | None, bar: Any) -> None:
    if on_result is not None:
        on_result(result)
    if bar is not None:
        bar.update(1)


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr when asked and stdout is a terminal (imported only then)."""
    if not enabled or not sys.stdout.isatty() or total < 2:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, leave=False)


# ---------------------------------------------------------------- the worker process


class _Stopping(Exception):
    """The batch is stopping: this output is not committed."""


def _terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)  # the temporary file is removed on the way out


def _worker(argv: list[str]) -> None:
    """A worker's life: jobs from the parent until its pipe closes; each commit agreed first."""
    read_fd, write_fd, parent = (int(a) for a in argv[1:4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, _terminated)
    if not die_with_parent(parent):
        os._exit(0)
    requests, replies = Connection(read_fd, writable=False), Connection(write_fd, readable=False)

    def guard(rename: Callable[[], None], path: str) -> None:
        replies.send(("commit?",))
        if not requests.recv():
            raise _Stopping("the batch was stopped before this output was committed")
        rename()
        replies.send(("committed",))

    paths.commit_guard = guard
    paths.temp_listeners.append(lambda event, path: replies.send(("temp", event, path)))
    while True:
        try:
            _, function, source, target, arguments = requests.recv()
        except (EOFError, OSError):
            os._exit(0)
        module, _, name = function.partition(":")
        run = getattr(importlib.import_module(module), name)
        try:
            result = run(source, target, *pickle.loads(arguments))
        except Exception as error:  # the job describes its own errors; this is a bug in it
            result = failure_of(source, target, error)
        try:
            replies.send(("done", result))
        except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle
            replies.send(("done", dataclasses.replace(result, exception=None)))


if __name__ == "__main__":
    _worker(sys.argv)
