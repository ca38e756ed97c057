"""Many models at once: convert a folder, guard a pipeline.

* :func:`rewrite_many` converts files and folders (searched recursively for
  ``*.tflite``) into an output folder, keeping their relative paths, or in
  place; on a local process pool by default, or on any
  ``concurrent.futures.Executor`` (a Dask or Ray cluster's, for example). A bad
  file is reported and skipped; the others are converted.
* :func:`check_many` says which files still have a float32 constant the
  rewrite would convert: the guard that every shipped model is float16.

>>> results = rewrite_many(["models/"], "models_fp16/", jobs=4)       # doctest: +SKIP
>>> sum(r.ok for r in results), len(results)                          # doctest: +SKIP
(41, 42)
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import InvalidModelError, RewriteError, UnsupportedModelError
from .options import Options
from .text import quote

__all__ = ["rewrite_many", "check_many", "find_models", "BatchResult", "CheckResult"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class BatchResult:
    """One input of :func:`rewrite_many`: its report, or why it failed."""

    input: str
    output: Optional[str]
    report: Any = None  # a Report (a WidenReport with to="float32"); None when it failed
    error: Optional[str] = None
    error_type: Optional[str] = None
    bad_input: bool = False  # the failure is the input's (invalid, unsupported, lossy ...)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        """"converted", "unchanged" (nothing to convert) or "failed"."""
        if self.error is not None:
            return "failed"
        return "unchanged" if self.report.unchanged else "converted"

    def to_dict(self) -> Dict[str, Any]:
        if self.error is not None:
            return {"input": self.input, "output": self.output, "status": "failed",
                    "error": {"type": self.error_type, "message": self.error, "bad_input": self.bad_input}}
        return {"input": self.input, "output": self.output, "status": self.status, "report": self.report.to_dict()}


@dataclass(frozen=True)
class CheckResult:
    """One input of :func:`check_many`: the tensors a rewrite would convert (none: it passes)."""

    input: str
    would_convert: Tuple[str, ...] = ()  # tensor names
    error: Optional[str] = None

    @property
    def passes(self) -> bool:
        return self.error is None and not self.would_convert

    def to_dict(self) -> Dict[str, Any]:
        return {"input": self.input, "passes": self.passes, "would_convert": list(self.would_convert), "error": self.error}


def find_models(inputs: Iterable[PathLike]) -> List[Tuple[Path, Path]]:
    """(file, path relative to its input) for every input file, and every ``*.tflite`` under
    every input folder (recursively, in sorted order). A missing input is kept, to fail later."""
    found: List[Tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for model in sorted(p for p in path.rglob("*.tflite") if p.is_file()):
                found.append((model, model.relative_to(path)))
        else:
            found.append((path, Path(path.name)))
    return found


def _convert_one(source: str, target: str, options: Options, to: str) -> BatchResult:
    """Runs in a worker: one file, every error caught and described."""
    try:
        if to == "float32":
            from .widen import widen

            report: Any = widen(source, target, layout=options.layout)
        else:
            from .api import rewrite

            report = rewrite(source, target, options)
        return BatchResult(source, target, report)
    except (InvalidModelError, UnsupportedModelError, RewriteError, OSError) as error:
        from .errors import InvalidInputsError, LossyModelError, MissingDependencyError

        bad = isinstance(error, (InvalidModelError, UnsupportedModelError, LossyModelError, InvalidInputsError, MissingDependencyError))
        return BatchResult(source, target, None, " ".join(str(error).split()), type(error).__name__, bad)
    except Exception as error:  # a bug: reported for this file, the others go on
        return BatchResult(source, target, None, f"internal error: {type(error).__name__}: {error} (please report it)",
                           type(error).__name__, False)


def rewrite_many(inputs: Sequence[PathLike], out_dir: Optional[PathLike] = None, *, in_place: bool = False,
                 jobs: Optional[int] = None, executor: Optional[concurrent.futures.Executor] = None,
                 to: str = "float16", options: Optional[Options] = None, progress: bool = False,
                 on_result: Any = None, **overrides: Any) -> List[BatchResult]:
    """Convert every input file and every ``*.tflite`` under every input folder.

    Outputs go to ``out_dir`` at the input's path relative to the folder it was found in (a
    file given directly goes to ``out_dir/<its name>``), or, with ``in_place``, over the
    input. ``jobs`` files are converted at once in separate processes (default: the number
    of cores); or pass any ``concurrent.futures.Executor`` as ``executor`` (for a cluster:
    ``client.get_executor()`` with Dask, for example). ``to="float32"`` widens float16
    models back instead (:func:`~tflite_fp16.widen.widen`). The options are those of
    :func:`~tflite_fp16.rewrite`. ``on_result(result)`` is called as each file finishes.

    Returns one :class:`BatchResult` per input file, in input order; a file that fails does
    not stop the others.
    """
    if (out_dir is None) == (not in_place):
        raise ValueError("give out_dir, or in_place=True (not both)")
    if to not in ("float16", "float32"):
        raise ValueError(f"to must be 'float16' or 'float32', not {to!r}")
    opts = Options.resolve(options, **overrides)
    if opts.save_keep is not None:
        raise ValueError("save_keep names one file; it has no meaning for many (use keep_from)")
    models = find_models(inputs)
    work: List[Tuple[int, str, str]] = []  # (position in the results, input, output)
    results: Dict[int, BatchResult] = {}
    writers: Dict[str, str] = {}  # output -> the input written there
    bar = _progress(len(models), progress)
    for i, (source, relative) in enumerate(models):
        target = str(source) if in_place else str(Path(out_dir) / relative)  # type: ignore[arg-type]
        key = os.path.abspath(target)
        if key in writers:
            results[i] = BatchResult(str(source), target, None, f"{quote(writers[key])} is written to the same output",
                                     "OutputError", False)
            _report(results[i], on_result, bar)
            continue
        writers[key] = str(source)
        if not in_place:
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        work.append((i, str(source), target))
    own = None
    workers = jobs or os.cpu_count() or 1
    if executor is None and workers > 1 and len(work) > 1:
        own = executor = concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(work)))
    try:
        if executor is None:
            for i, source, target in work:
                results[i] = _convert_one(source, target, opts, to)
                _report(results[i], on_result, bar)
        else:
            futures = {executor.submit(_convert_one, source, target, opts, to): (i, source, target) for i, source, target in work}
            for future in concurrent.futures.as_completed(futures):
                i, source, target = futures[future]
                try:
                    results[i] = future.result()
                except Exception as error:  # the worker itself died (killed, out of memory)
                    results[i] = BatchResult(source, target, None,
                                             f"the worker converting it failed: {type(error).__name__}: {error}",
                                             type(error).__name__, False)
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


def check_many(inputs: Sequence[PathLike], options: Optional[Options] = None, **overrides: Any) -> List[CheckResult]:
    """For every input file and every ``*.tflite`` under every input folder: the tensors the
    rewrite would convert (with these options). Writes nothing.

    >>> [r.input for r in check_many(["release/"]) if not r.passes]     # doctest: +SKIP
    ['release/detector.tflite']
    """
    from .api import plan_file

    opts = Options.resolve(options, **overrides)
    results = []
    for source, _ in find_models(inputs):
        try:
            plan = plan_file(source, opts)
            results.append(CheckResult(str(source), tuple(t.name for t in plan.tensors)))
        except (RewriteError, OSError) as error:
            results.append(CheckResult(str(source), (), " ".join(str(error).split())))
    return results
