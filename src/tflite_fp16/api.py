"""The public functions: options resolved, steps composed, nothing else.

:func:`rewrite`, :func:`rewrite_bytes`, :func:`plan_file` and :func:`plan_bytes` take the same
options: an :class:`~tflite_fp16.options.Options` and/or keyword arguments named after its
fields (typed: :class:`~tflite_fp16.options.OptionsArguments`). The conversion itself is
:mod:`tflite_fp16.pipeline`; the tolerance search, :mod:`tflite_fp16.tools.auto`; many files,
:mod:`tflite_fp16.tools.batch`. What a conversion warns about is issued as a
:class:`~tflite_fp16.errors.Tflite16Warning` too.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from .conversion.plan import Plan
from .errors import RewriteError, Tflite16Warning, VerificationError
from .format.paths import check_side_outputs
from .format.writer import copy_file
from .options import Options
from .pipeline import BytesLike, FileJob, byte_view, convert_bytes, convert_file, plan_of_bytes, plan_of_file
from .report import Report

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import OptionsArguments
    from .tools.auto import SearchResult
    from .tools.batch import BatchResult, CheckResult
    from .verification import VerifyReport

__all__ = ["check_many", "plan_bytes", "plan_file", "rewrite", "rewrite_bytes", "rewrite_many"]

PathLike = str | os.PathLike[str]


def plan_file(path_in: PathLike, options: Options | None = None, **overrides: Unpack[OptionsArguments]) -> Plan:
    """What :func:`rewrite` would convert in ``path_in``, and why not the rest.

    The plan holds each conversion's value statistics; for the exact cast
    errors of every tensor, make a dry run: ``rewrite(path_in, None)``.

    >>> plan = plan_file("examples/small_cnn.tflite", min_elements=32)
    >>> len(plan.tensors), plan.kept_by_reason()
    (7, {'min_elements': 3})
    """
    return plan_of_file(path_in, Options.resolve(options, **overrides))


def plan_bytes(data: BytesLike, options: Options | None = None, **overrides: Unpack[OptionsArguments]) -> Plan:
    """:func:`plan_file` for a model held in memory.

    >>> with open("examples/small_cnn.tflite", "rb") as f:
    ...     len(plan_bytes(f.read()).tensors)
    10
    """
    return plan_of_bytes(data, Options.resolve(options, **overrides))


def rewrite(
    path_in: PathLike,
    path_out: PathLike | None,
    options: Options | None = None,
    **overrides: Unpack[OptionsArguments],
) -> Report:
    """Write the float16 version of the float32 TFLite model ``path_in`` to ``path_out``.

    Every FLOAT32 constant that an operator reads is stored as float16 and
    read through a new DEQUANTIZE op, as TensorFlow's float16 post-training
    quantization does, except constants float16 cannot hold faithfully
    (``lossy="keep"``, the default) and those the options exclude; everything
    else is carried over. ``path_out`` may be ``path_in``; it is replaced only
    when the new file is complete. With ``path_out=None`` nothing is written
    (a dry run) and the report says what would be done, with the exact cast
    errors and the output's size. When nothing is converted, the output gets the
    input's bytes.

    Options (see :class:`~tflite_fp16.options.Options`) come as ``options=`` or
    as keywords: ``keep``, ``keep_tensors``, ``keep_from``, ``skip_ops``,
    ``min_elements``, ``custom_op_inputs``, ``lossy``, ``max_cast_error``,
    ``layout``, ``fp16_compute``; ``verify``, ``inputs``, ``probes``,
    ``tolerance``, ``metric``, ``check``, ``shapes``, ``layers``, ``plot``,
    ``verify_timeout``; ``auto``, ``save_keep``; ``progress``. With ``auto``,
    the constants to keep float32 are searched by running the model (see
    :mod:`tflite_fp16.tools.auto`).

    >>> report = rewrite("examples/small_cnn.tflite", "small_cnn_fp16.tflite")
    >>> print(report.summary())
    10 tensors converted to float16; 20,520 -> 15,024 bytes (73.2%)

    Raises :class:`InvalidModelError` for input that is not a readable TFLite
    model, :class:`UnsupportedModelError` for a model it cannot rewrite
    without losing something, :class:`LossyModelError` for lossy constants
    under ``lossy="error"``, and :class:`VerificationError` (no output
    written) when ``verify`` finds the outputs beyond ``tolerance``.
    """
    opts = Options.resolve(options, **overrides)
    if path_out is None and opts.verify:
        raise ValueError("verify needs an output to check, and a dry run (path_out=None) writes none")
    check_side_outputs([("keep file", opts.save_keep), ("plot", opts.plot)], [("input", path_in), ("output", path_out)])
    if not opts.auto:
        return _warned(_drawn(opts, lambda: convert_file(path_in, path_out, opts)))
    from .tools import auto

    start = time.perf_counter()
    FileJob(path_in, path_out)  # the paths are checked before the search
    result = _search(lambda: auto.search(os.fspath(path_in), opts), opts)
    accept = result.accept if path_out is not None else None
    with _carrying(result):
        report = convert_file(path_in, path_out, result.final_options(opts), verify=accept)
    return _warned(_searched(report, result, opts, start))


def rewrite_bytes(
    data: BytesLike, options: Options | None = None, **overrides: Unpack[OptionsArguments]
) -> tuple[bytes, Report]:
    """:func:`rewrite` for a model held in memory: the float16 model's bytes and the report.

    >>> with open("examples/small_cnn.tflite", "rb") as f:
    ...     converted, report = rewrite_bytes(f.read(), lossy="convert")
    >>> len(converted), report.tensors_converted
    (15024, 10)
    """
    opts = Options.resolve(options, **overrides)
    check_side_outputs([("keep file", opts.save_keep), ("plot", opts.plot)], [])
    if not opts.auto:
        output, report = convert_bytes(data, opts)
        _draw(opts, report.verification)
        return output, _warned(report)
    from .tools import auto

    start = time.perf_counter()
    original = bytes(byte_view(data))
    result = _search(lambda: auto.search(original, opts), opts)
    with _carrying(result):
        output, report = convert_bytes(original, result.final_options(opts), verify=result.accept)
    return output, _warned(_searched(report, result, opts, start))


def _warned(report: Report) -> Report:
    """``report``, its warnings issued through :mod:`warnings` too (category :class:`Tflite16Warning`)."""
    for warning in report.warnings:
        warnings.warn(warning, Tflite16Warning, stacklevel=3)
    return report


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
        with warnings.catch_warnings():  # the report lists them; a worker has nobody to show them to
            warnings.simplefilter("ignore", Tflite16Warning)
            quiet = dataclasses.replace(options, progress=False)  # the batch shows its own progress
            report: Any = (
                widen(source, target, layout=options.layout) if to == "float32" else rewrite(source, target, quiet)
            )
        return BatchResult(source, target, report)
    except Exception as error:
        return failure_of(source, target, error)


def rewrite_many(
    paths: Sequence[PathLike],
    out_dir: PathLike | None = None,
    *,
    in_place: bool = False,
    jobs: int | None = None,
    executor: Executor | None = None,
    to: Literal["float16", "float32"] = "float16",
    options: Options | None = None,
    on_result: Callable[[BatchResult], None] | None = None,
    raise_on_error: bool = False,
    **overrides: Unpack[OptionsArguments],
) -> list[BatchResult]:
    """Convert every file of ``paths`` and every ``*.tflite`` under every folder of them.

    Outputs go to ``out_dir`` at the input's path relative to the folder it was found in (a
    file given directly goes to ``out_dir/<its name>``), or, with ``in_place``, over the
    input. ``jobs`` files are converted at once in worker processes (default: the number of
    cores; at most 32, and never more than the files); or pass any
    ``concurrent.futures.Executor`` as ``executor`` (for a cluster: ``client.get_executor()``
    with Dask, for example). ``to="float32"`` widens float16 models back instead
    (:func:`~tflite_fp16.tools.widen.widen`). The options are those of :func:`rewrite`
    (``progress=True`` shows a bar on a terminal). ``on_result(result)`` is called as each
    file finishes.

    Returns one :class:`~tflite_fp16.tools.batch.BatchResult` per input file, in input
    order; a file that fails does not stop the others (``raise_on_error=True``: when all are
    done, the first failure's exception is raised). A signal (Ctrl-C, SIGTERM) stops the batch
    with :class:`~tflite_fp16.tools.batch.BatchInterrupted`, which lists the files written.

    >>> results = rewrite_many(["examples/"], "examples_fp16/", jobs=2)
    >>> sum(r.ok for r in results), len(results)
    (3, 3)
    """
    if (out_dir is None) == (not in_place):
        raise ValueError("give out_dir, or in_place=True (not both)")
    if to not in ("float16", "float32"):
        raise ValueError(f"to must be 'float16' or 'float32', not {to!r}")
    from .tools.batch import run_batch

    opts = Options.resolve(options, **overrides)
    if opts.save_keep is not None:
        raise ValueError("save_keep names one file; it has no meaning for many (use keep_from)")
    results = run_batch(
        paths,
        out_dir,
        in_place,
        convert_one,
        (opts, to),
        jobs=jobs,
        executor=executor,
        progress=bool(opts.progress),
        on_result=on_result,
    )
    if raise_on_error:
        failed = next((r for r in results if not r.ok), None)
        if failed is not None:
            if failed.exception is not None:
                raise failed.exception
            raise RewriteError(f"{failed.input}: {failed.error}")
    return results


def check_many(
    paths: Sequence[PathLike], options: Options | None = None, **overrides: Unpack[OptionsArguments]
) -> list[CheckResult]:
    """For every file of ``paths`` and every ``*.tflite`` under every folder of them: the tensors
    the rewrite would convert (with these options). Writes nothing.

    >>> [r.input for r in check_many(["examples/"]) if not r.passes]
    ['examples/audio_frontend.tflite', 'examples/filterbank.tflite', 'examples/small_cnn.tflite']
    """
    from .tools.batch import CheckResult, find_models

    opts = Options.resolve(options, **overrides)
    models, refused = find_models(paths)
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
