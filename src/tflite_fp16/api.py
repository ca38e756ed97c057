"""The public functions: options resolved, steps composed, nothing else.

:func:`rewrite`, :func:`rewrite_bytes` and :func:`plan_file` take the same options: an
:class:`~tflite_fp16.options.Options` and/or keyword arguments named after its fields.
The conversion itself is :mod:`tflite_fp16.pipeline`; the tolerance search,
:mod:`tflite_fp16.tools.auto`; many files, :mod:`tflite_fp16.tools.batch`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Union

from .conversion.plan import Plan
from .errors import RewriteError, VerificationError
from .format.paths import check_output
from .format.writer import copy_file
from .options import Options
from .pipeline import BytesLike, FileJob, byte_view, convert_bytes, convert_file, plan_of_file
from .report import Report

if TYPE_CHECKING:
    from .tools.auto import SearchResult
    from .tools.batch import BatchResult, CheckResult
    from .verification import VerifyReport

__all__ = ["check_many", "plan_file", "rewrite", "rewrite_bytes", "rewrite_many"]

PathLike = Union[str, "os.PathLike[str]"]


def plan_file(path_in: PathLike, options: Options | None = None, **overrides: Any) -> Plan:
    """What :func:`rewrite` would convert in ``path_in``, and why not the rest.

    The plan holds each conversion's value statistics; for the exact cast
    errors of every tensor, make a dry run: ``rewrite(path_in, None)``.

    >>> print(plan_file("model.tflite", min_elements=16).describe())     # doctest: +SKIP
    """
    return plan_of_file(path_in, Options.resolve(options, **overrides))


def rewrite(path_in: PathLike, path_out: PathLike | None, options: Options | None = None, **overrides: Any) -> Report:
    """Write the float16 version of the float32 TFLite model ``path_in`` to ``path_out``.

    Every FLOAT32 constant that an operator reads is stored as float16 and
    read through a new DEQUANTIZE op, as TensorFlow's float16 post-training
    quantization does, except constants float16 cannot hold faithfully
    (``lossy="keep"``, the default) and those the options exclude; everything
    else is carried over. ``path_out`` may be ``path_in``; it is replaced only
    when the new file is complete. With ``path_out=None`` nothing is written
    (a dry run) and the report says what would be done, with the exact cast
    errors. When nothing is converted, the output gets the input's bytes.

    Options (see :class:`~tflite_fp16.options.Options`) come as ``options=`` or
    as keywords: ``keep``, ``skip_ops``, ``min_elements``,
    ``custom_op_inputs``, ``lossy``, ``max_cast_error``, ``layout``,
    ``verify``, ``inputs``, ``tolerance``, ``auto``, ``keep_from``,
    ``save_keep``, ``progress``. With ``auto``, the constants to keep float32
    are searched by running the model (see :mod:`tflite_fp16.tools.auto`).

    >>> report = rewrite("model.tflite", "model_fp16.tflite")   # doctest: +SKIP
    >>> print(report.summary())                                  # doctest: +SKIP
    10 tensors converted to float16; 20,520 -> 14,888 bytes (72.6%)

    Raises :class:`InvalidModelError` for input that is not a readable TFLite
    model, :class:`UnsupportedModelError` for a model it cannot rewrite
    without losing something, :class:`LossyModelError` for lossy constants
    under ``lossy="error"``, and :class:`VerificationError` (no output
    written) when ``verify`` finds the outputs beyond ``tolerance``.
    """
    opts = Options.resolve(options, **overrides)
    if opts.plot is not None:
        check_output(opts.plot)
    if not opts.auto:
        return _drawn(opts, lambda: convert_file(path_in, path_out, opts))
    from .tools import auto

    start = time.perf_counter()
    FileJob(path_in, path_out)  # the paths are checked before the search
    result = _search(lambda: auto.search(os.fspath(path_in), opts), opts)
    accept = result.accept if path_out is not None else None
    with _carrying(result):
        report = convert_file(path_in, path_out, result.final_options(opts), verify=accept)
    return _searched(report, result, opts, start)


def rewrite_bytes(data: BytesLike, options: Options | None = None, **overrides: Any) -> tuple[bytes, Report]:
    """:func:`rewrite` for a model held in memory: the float16 model's bytes and the report.

    >>> with open("model.tflite", "rb") as f:                     # doctest: +SKIP
    ...     converted, report = rewrite_bytes(f.read(), lossy="convert")
    """
    opts = Options.resolve(options, **overrides)
    if opts.plot is not None:
        check_output(opts.plot)
    if not opts.auto:
        output, report = convert_bytes(data, opts)
        _draw(opts, report.verification)
        return output, report
    from .tools import auto

    start = time.perf_counter()
    original = bytes(byte_view(data))
    result = _search(lambda: auto.search(original, opts), opts)
    with _carrying(result):
        output, report = convert_bytes(original, result.final_options(opts), verify=result.accept)
    return output, _searched(report, result, opts, start)


def _drawn(options: Options, convert: Callable[[], Report]) -> Report:
    """``convert()``, with ``options.plot`` drawn from its verification, failed or passed."""
    try:
        report = convert()
    except VerificationError as error:
        _draw(options, error.report)
        raise
    _draw(options, report.verification)
    return report


def _draw(options: Options, verification: VerifyReport | None, curve: Sequence[tuple[int, float, bool]] = ()) -> None:
    """Write ``options.plot``: the per-layer error of ``verification`` and a search's ``curve``."""
    if options.plot is None or ((verification is None or not verification.layers) and not curve):
        return
    from .verification.plot import plot_png

    points = [(bytes_kept, error) for bytes_kept, error, _ in curve]
    copy_file(plot_png(verification, points, options.tolerance), options.plot)


def _search(search: Callable[[], SearchResult], options: Options) -> SearchResult:
    """Run the tolerance search; write its keep file (before the final conversion, so that it is
    there whatever comes next) and its plot, also when it fails."""
    from .tools import auto

    try:
        result = search()
    except VerificationError as error:
        if error.search is not None:
            _draw(options, error.search.default_layers, error.search.curve)
        raise
    if options.save_keep is not None:
        copy_file(auto.keep_file_text(result).encode("utf-8"), options.save_keep)
    _draw(options, result.default_layers, result.curve)
    return result


@contextmanager
def _carrying(result: SearchResult) -> Iterator[None]:
    """A verification error of the final conversion carries the search that led to it."""
    try:
        yield
    except VerificationError as error:
        error.search = result
        raise


def _searched(report: Report, result: SearchResult, options: Options, start: float) -> Report:
    """The final conversion's report as the search's: its kept tensors labelled ``tolerance`` and
    the search attached."""
    from .tools import auto

    return dataclasses.replace(
        report,
        plan=auto.relabel(report.plan, result),
        options=options,
        search=result,
        seconds=time.perf_counter() - start,
    )


def convert_one(source: str, target: str, options: Options, to: str) -> BatchResult:
    """One file of :func:`rewrite_many` (run in a worker): every error caught and described."""
    from .tools.batch import BatchResult, failure_of
    from .tools.widen import widen

    try:
        report: Any = (
            widen(source, target, layout=options.layout) if to == "float32" else rewrite(source, target, options)
        )
        return BatchResult(source, target, report)
    except Exception as error:
        return failure_of(source, target, error)


def rewrite_many(
    inputs: Sequence[PathLike],
    out_dir: PathLike | None = None,
    *,
    in_place: bool = False,
    jobs: int | None = None,
    executor: Executor | None = None,
    to: str = "float16",
    options: Options | None = None,
    progress: bool = False,
    on_result: Callable[[BatchResult], None] | None = None,
    **overrides: Any,
) -> list[BatchResult]:
    """Convert every input file and every ``*.tflite`` under every input folder.

    Outputs go to ``out_dir`` at the input's path relative to the folder it was found in (a
    file given directly goes to ``out_dir/<its name>``), or, with ``in_place``, over the
    input. ``jobs`` files are converted at once in separate processes (default: the number
    of cores); or pass any ``concurrent.futures.Executor`` as ``executor`` (for a cluster:
    ``client.get_executor()`` with Dask, for example). ``to="float32"`` widens float16
    models back instead (:func:`~tflite_fp16.tools.widen.widen`). The options are those of
    :func:`rewrite`. ``on_result(result)`` is called as each file finishes.

    Returns one :class:`~tflite_fp16.tools.batch.BatchResult` per input file, in input
    order; a file that fails does not stop the others.

    >>> results = rewrite_many(["models/"], "models_fp16/", jobs=4)       # doctest: +SKIP
    >>> sum(r.ok for r in results), len(results)                          # doctest: +SKIP
    (41, 42)
    """
    if (out_dir is None) == (not in_place):
        raise ValueError("give out_dir, or in_place=True (not both)")
    if to not in ("float16", "float32"):
        raise ValueError(f"to must be 'float16' or 'float32', not {to!r}")
    from .tools.batch import run_batch

    opts = Options.resolve(options, **overrides)
    if opts.save_keep is not None:
        raise ValueError("save_keep names one file; it has no meaning for many (use keep_from)")
    return run_batch(
        inputs,
        out_dir,
        in_place,
        convert_one,
        (opts, to),
        jobs=jobs,
        executor=executor,
        progress=progress,
        on_result=on_result,
    )


def check_many(inputs: Sequence[PathLike], options: Options | None = None, **overrides: Any) -> list[CheckResult]:
    """For every input file and every ``*.tflite`` under every input folder: the tensors the
    rewrite would convert (with these options). Writes nothing.

    >>> [r.input for r in check_many(["release/"]) if not r.passes]     # doctest: +SKIP
    ['release/detector.tflite']
    """
    from .tools.batch import CheckResult, find_models

    opts = Options.resolve(options, **overrides)
    models, refused = find_models(inputs)
    results = [CheckResult(r.input, (), r.error) for r in refused]
    for source, _ in models:
        try:
            tensors = plan_of_file(source, opts).tensors
            results.append(
                CheckResult(
                    str(source), tuple(t.name for t in tensors), None, tuple((t.subgraph, t.tensor) for t in tensors)
                )
            )
        except (RewriteError, OSError) as error:
            results.append(CheckResult(str(source), (), " ".join(str(error).split())))
    return results
