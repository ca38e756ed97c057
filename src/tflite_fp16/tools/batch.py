"""Many models at once: the files of folders, run on a process pool or any executor.

:func:`find_models` lists the model files of files and folders (searched
recursively for ``*.tflite``); :func:`run_batch` runs one job per file, on a
local process pool by default or on any ``concurrent.futures.Executor`` (a
Dask or Ray cluster's), each file's failure its own. The public
:func:`tflite_fp16.rewrite_many` and :func:`tflite_fp16.check_many` compose
these with the conversion.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import (
    InvalidInputsError,
    InvalidModelError,
    LossyModelError,
    MissingDependencyError,
    RewriteError,
    UnsupportedModelError,
)
from ..text import quote

__all__ = ["BatchResult", "CheckResult", "failure_of", "find_models", "run_batch"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class BatchResult:
    """One input of :func:`rewrite_many`: its report, or why it failed."""

    input: str
    output: str | None
    report: Any = None  # a Report (a WidenReport with to="float32"); None when it failed
    error: str | None = None
    error_type: str | None = None
    bad_input: bool = False  # the failure is the input's (invalid, unsupported, lossy ...)

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

    @property
    def passes(self) -> bool:
        return self.error is None and not self.would_convert

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "passes": self.passes,
            "would_convert": list(self.would_convert),
            "error": self.error,
        }


def find_models(inputs: Iterable[PathLike]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input) for every input file, and every ``*.tflite`` under
    every input folder (recursively, in sorted order). A missing input is kept, to fail later."""
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for model in sorted(p for p in path.rglob("*.tflite") if p.is_file()):
                found.append((model, model.relative_to(path)))
        else:
            found.append((path, Path(path.name)))
    return found


def failure_of(source: str, target: str, error: Exception) -> BatchResult:
    """The result of a file whose job raised ``error``: described in one line, a bug said to be one."""
    if isinstance(error, (RewriteError, OSError)):
        bad = isinstance(
            error,
            (InvalidModelError, UnsupportedModelError, LossyModelError, InvalidInputsError, MissingDependencyError),
        )
        return BatchResult(source, target, None, " ".join(str(error).split()), type(error).__name__, bad)
    return BatchResult(
        source,
        target,
        None,
        f"internal error: {type(error).__name__}: {error} (please report it)",
        type(error).__name__,
        False,
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
    the input. Returns one result per file, in input order. ``job`` must be picklable (a
    module-level function) to run in other processes."""
    models = find_models(inputs)
    work: list[tuple[int, str, str]] = []  # (position in the results, input, output)
    results: dict[int, BatchResult] = {}
    writers: dict[str, str] = {}  # output -> the input written there
    bar = _progress(len(models), progress)
    for i, (found, relative) in enumerate(models):
        target = str(found) if in_place else str(Path(out_dir) / relative)  # type: ignore[arg-type]
        key = os.path.abspath(target)
        if key in writers:
            results[i] = BatchResult(
                str(found), target, None, f"{quote(writers[key])} is written to the same output", "OutputError", False
            )
            _report(results[i], on_result, bar)
            continue
        writers[key] = str(found)
        if not in_place:
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        work.append((i, str(found), target))
    own = None
    workers = jobs or os.cpu_count() or 1
    if executor is None and workers > 1 and len(work) > 1:
        own = executor = concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(work)))
    try:
        if executor is None:
            for i, source, target in work:
                results[i] = job(source, target, *arguments)
                _report(results[i], on_result, bar)
        else:
            futures = {
                executor.submit(job, source, target, *arguments): (i, source, target) for i, source, target in work
            }
            for future in concurrent.futures.as_completed(futures):
                i, source, target = futures[future]
                try:
                    results[i] = future.result()
                except Exception as error:  # the worker itself died (killed, out of memory)
                    results[i] = BatchResult(
                        source,
                        target,
                        None,
                        f"the worker converting it failed: {type(error).__name__}: {error}",
                        type(error).__name__,
                        False,
                    )
                _report(results[i], on_result, bar)
    finally:
        if own is not None:
            own.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return [results[i] for i in range(len(models))]


def _report(result: Any, on_result: Any, bar: Any) -> None:
    if on_result is not None:
        on_result(result)
    if bar is not None:
        bar.update(1)


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr when asked and stdout is a terminal (imported only then)."""
    if not enabled or not sys.stdout.isatty() or total < 2:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency; without it, no bar
        return None
    return tqdm(total=total, unit="file", file=sys.stderr, leave=False)
