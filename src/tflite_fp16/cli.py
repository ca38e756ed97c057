"""The ``tflite-fp16`` command: parse, call :func:`tflite_fp16.rewrite`, print, exit.

:func:`run` (the console script, and ``python -m tflite_fp16``) supervises
:func:`main` in a child process: see :func:`run`. Only light modules are
imported here; the rest is imported inside :func:`main`, where an interrupt
still ends in one line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, TextIO

from .errors import (
    InvalidInputsError,
    InvalidModelError,
    LossyModelError,
    MissingDependencyError,
    RewriteError,
    UnsupportedModelError,
    VerificationError,
)
from .options import (
    BREAKAGE_BOUND,
    DEFAULT_MAX_CAST_ERROR,
    DEFAULT_TOLERANCE,
    DEFAULT_VERIFY_TIMEOUT,
    LOSSY_POLICIES,
    METRICS,
    Options,
)
from .text import quote
from .version import __version__

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_VERIFY_FAILED = 3
EXIT_CHECK_FOUND = 4
_BAD_INPUT = (InvalidModelError, UnsupportedModelError, LossyModelError, InvalidInputsError, MissingDependencyError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflite-fp16",
        description="Store the float32 weights of a TFLite model as float16 (with DEQUANTIZE ops), "
        "as TensorFlow's float16 post-training quantization does, from the .tflite file alone. "
        "Exit status: 0 done, 1 failure (for many inputs: any failed), 2 bad input or usage, 3 verification failed "
        "(or --auto cannot meet the tolerance), 4 --check found a constant to convert.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="IN OUT: convert one model (OUT may equal IN); with -o DIR, --in-place or --check: "
        "model files and folders (searched for *.tflite)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be converted and why not the rest; write nothing"
    )
    parser.add_argument(
        "--to",
        choices=("float16", "float32"),
        default="float16",
        help="float32: undo a float16 conversion (ours or TensorFlow's): float16 weights read through "
        "DEQUANTIZE become float32 constants again",
    )

    many = parser.add_argument_group("many models (tflite-fp16 inspect MODEL [--json]: what is in a file)")
    many.add_argument("-o", "--output-dir", metavar="DIR", help="convert every input into DIR, keeping relative paths")
    many.add_argument("--in-place", action="store_true", help="convert every input where it is")
    many.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="convert N files at once in separate processes (default: the number of cores)",
    )
    many.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 4 when an input still has a constant the rewrite would convert, "
        "naming each such file (a pipeline's guard that every model is float16)",
    )

    select = parser.add_argument_group("what to convert")
    select.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep tensors whose name (or a ';'-separated part of it) matches PATTERN "
        "(fnmatch, e.g. '*/attention/*') float32; repeatable",
    )
    select.add_argument(
        "--skip-op",
        action="append",
        default=[],
        metavar="NAME",
        help="keep every constant this operator reads float32: a schema name (RESIZE_BILINEAR) "
        "or CUSTOM:name; repeatable",
    )
    select.add_argument(
        "--min-elements",
        type=int,
        default=0,
        metavar="N",
        help="keep constants of fewer than N values float32 (default 0: convert all)",
    )
    select.add_argument(
        "--convert-custom-op-inputs",
        action="store_true",
        help="also convert constants read by custom operators (only for kernels that take any float32 input)",
    )
    select.add_argument(
        "--lossy",
        choices=LOSSY_POLICIES,
        default="keep",
        help="constants float16 cannot hold faithfully (beyond +-65504, or cast error above "
        "--max-cast-error): keep them float32 (default), convert them as TensorFlow does, or refuse (error)",
    )
    select.add_argument(
        "--max-cast-error",
        type=float,
        default=DEFAULT_MAX_CAST_ERROR,
        metavar="X",
        help=f"relative L2 cast error above which a constant is lossy (default {DEFAULT_MAX_CAST_ERROR:g})",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--layout",
        choices=("auto", "normal", "offset"),
        default="auto",
        help="where buffer data goes: inside the flatbuffer (normal, up to 2 GiB), after it (offset: "
        "Buffer.offset/size, as TensorFlow writes large models), or normal whenever it fits (auto, the default)",
    )
    output.add_argument(
        "--fp16-compute",
        action="store_true",
        help="declare the model fit for float16 arithmetic (reduced_precision_support = fp16accfp16, "
        "not TensorFlow's fp16accfp32): XNNPACK then computes in float16 on CPUs with native float16 "
        "(ARMv8.2+), faster and less precise",
    )
    output.add_argument("-v", "--verbose", action="store_true", help="one line per converted and per kept tensor")
    output.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    output.add_argument(
        "--json",
        metavar="FILE",
        help="write the report as JSON to FILE ('-': stdout, and nothing else there); "
        "for many inputs, a list with one report per input",
    )

    check = parser.add_argument_group("verification (needs: pip install 'tflite-fp16[verify]')")
    check.add_argument(
        "--verify",
        action="store_true",
        help="run both models in LiteRT and compare every output before writing; exit 3 (and write "
        "nothing) when an output on --inputs is beyond --tolerance, or, on the probes (N(0,1), zeros, "
        f"N(0,1) x 1000), the model breaks: new non-finite values or a relative L2 error above {BREAKAGE_BOUND:g}",
    )
    check.add_argument(
        "--inputs",
        metavar="FILE",
        help="verify on these arrays instead of the probes: an .npz named after the inputs (one extra leading "
        "axis = several samples), or an .npy for a model with one input",
    )
    check.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="T",
        help=f"largest error accepted per output on --inputs, under --metric (default {DEFAULT_TOLERANCE:g})",
    )
    check.add_argument(
        "--metric",
        choices=METRICS,
        default="rel_l2",
        help="how --tolerance measures an output on --inputs: relative L2 error (default), max abs error, "
        "1 - cosine similarity, or top1: the share of rows whose arg-max over the last axis differs",
    )
    check.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="the probes' size for an input with dynamic dimensions (repeatable); without it, the first "
        "size LiteRT runs (1, 2, 4, ... 65536)",
    )
    check.add_argument(
        "--layers",
        action="store_true",
        help="compare every intermediate tensor on the worst sample and show where the error enters",
    )
    check.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw the per-layer error along the graph (and --auto's trade-off); needs pip install 'tflite-fp16[plot]'",
    )
    check.add_argument(
        "--verify-timeout",
        type=float,
        default=DEFAULT_VERIFY_TIMEOUT,
        metavar="S",
        help=f"seconds LiteRT may take to run one model on every sample (default {DEFAULT_VERIFY_TIMEOUT:g})",
    )
    check.add_argument(
        "--probes",
        action="store_true",
        default=None,
        help="with --inputs: run the three probes too (--auto always does)",
    )
    check.add_argument(
        "--auto",
        action="store_true",
        help="search the constants to keep float32 so that every output stays within --tolerance on "
        "--inputs and the probes (runs the model in LiteRT; the result is verified)",
    )
    check.add_argument(
        "--save-keep", metavar="FILE", help="with --auto: write the names the search kept float32 to FILE"
    )
    select.add_argument(
        "--keep-from",
        metavar="FILE",
        help="keep the tensors named in FILE float32 (one name or pattern a line, as --save-keep writes)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Options:
    verifying = (
        args.inputs is not None
        or args.tolerance is not None
        or args.probes
        or args.metric != "rel_l2"
        or args.shape
        or args.layers
        or args.plot is not None
        or args.verify_timeout != DEFAULT_VERIFY_TIMEOUT
    )
    if verifying and not (args.verify or args.auto):
        parser.error(
            "--inputs, --probes, --tolerance, --metric, --shape, --layers, --plot and --verify-timeout apply to "
            "--verify and --auto; add one of them"
        )
    if (
        args.verify
        and not args.auto
        and args.inputs is None
        and (args.tolerance or 0) < BREAKAGE_BOUND
        and (args.tolerance is not None or args.metric != "rel_l2")
    ):
        print(
            f"tflite-fp16: warning: --tolerance and --metric judge --inputs; without them the probes judge breakage "
            f"only (relative L2 error above {BREAKAGE_BOUND:g} or new non-finite values)",
            file=sys.stderr,
        )
    if args.save_keep is not None and not args.auto:
        parser.error("--save-keep writes what --auto chose; add --auto")
    if args.verify and args.dry_run:
        parser.error("--verify needs an output to check; drop --dry-run")
    if args.verify and args.check:
        parser.error("--check writes nothing to verify; drop --verify")
    try:
        return Options(
            keep=args.keep,
            skip_ops=args.skip_op,
            min_elements=args.min_elements,
            custom_op_inputs=args.convert_custom_op_inputs,
            lossy=args.lossy,
            max_cast_error=args.max_cast_error,
            layout=args.layout,
            fp16_compute=args.fp16_compute,
            verify=args.verify,
            inputs=args.inputs,
            probes=args.probes,
            tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
            metric=args.metric,
            shapes=_shapes(args.shape, parser),
            layers=args.layers,
            plot=args.plot,
            verify_timeout=args.verify_timeout,
            auto=args.auto,
            keep_from=args.keep_from,
            save_keep=args.save_keep,
            progress=False if args.quiet else ("lines" if args.verbose else True),
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def _shapes(values: list[str], parser: argparse.ArgumentParser) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not name or not shape:
            parser.error(f"--shape {value!r}: give NAME=D0,D1,... (for example --shape audio=1,16000)")
        shapes[name] = shape
    return shapes


def _emit_json(destination: str, data: Any) -> None:
    from .report import dumps

    text = dumps(data) + "\n"
    if destination == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(destination, "w", encoding="utf-8") as handle:
            handle.write(text)


def _error_json(args: argparse.Namespace, error: BaseException, status: int) -> dict[str, Any]:
    from .report import verification_to_dict

    return {
        "tool": "tflite-fp16",
        "version": __version__,
        "input": args.paths[0] if args.paths else None,
        "output": args.paths[1] if len(args.paths) > 1 else None,
        "error": {"type": type(error).__name__, "message": str(error), "exit_status": status},
        "verify": verification_to_dict(getattr(error, "report", None)),
        "auto": search.to_dict() if (search := getattr(error, "search", None)) is not None else None,
    }


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP, SIGQUIT) turned into an exception, so that the
    same clean-up as for Ctrl-C runs (no temporary file is left)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status (0 ok, 1 failure, 2 bad input or usage, 3 verification failed)."""
    try:
        return _main(argv)
    except KeyboardInterrupt as interrupt:
        signum = interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT
        print(f"tflite-fp16: interrupted ({signal.Signals(signum).name}); no output written", file=sys.stderr)
        return 128 + signum


_TERMINATION = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)]


def _raise_once(signum: int, frame: Any) -> None:
    """Turn the first termination signal into an exception; ignore the ones that follow
    (a terminal's Ctrl-C reaches the supervisor too, which forwards it), so that the
    clean-up the first one starts is not cut short."""
    for number in _TERMINATION:
        signal.signal(number, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def run() -> None:
    """The command's entry point. On POSIX it forks: the child runs :func:`main` with the
    termination signals turned into exceptions; the parent forwards signals to it, and
    when the child dies from a signal no handler can survive (SIGBUS, when the input file
    is truncated while it is memory-mapped; SIGKILL; a crash), the parent removes the
    temporary files the child reported and says so in one line."""
    argv = sys.argv[1:]
    if not hasattr(os, "fork") or os.environ.get("TFLITE_FP16_NO_SUPERVISOR"):
        for number in _TERMINATION:
            signal.signal(number, _raise_once)
        sys.exit(main(argv))
    sys.exit(_supervise(argv))


def _supervise(argv: list[str]) -> int:
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        status = EXIT_FAILURE
        try:
            for number in _TERMINATION:
                signal.signal(number, _raise_once)
            from .format import paths

            paths.temp_listeners.append(lambda event, path: _report(write_end, event, path))
            status = main(argv)
        except SystemExit as exit_:  # argparse: --help, --version, usage errors
            status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            status = 128 + signal.SIGINT
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)
    os.close(write_end)
    for number in _TERMINATION:
        signal.signal(number, lambda signum, frame: _forward(child, signum))
    temporaries: set[str] = set()
    reader = threading.Thread(target=_collect, args=(read_end, temporaries), daemon=True)
    reader.start()
    _, status = os.waitpid(child, 0)
    reader.join(timeout=5)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    signum = os.WTERMSIG(status)
    for path in sorted(temporaries):
        try:
            os.unlink(path)
        except OSError:
            pass
    name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else f"signal {signum}"
    if signum == getattr(signal, "SIGBUS", None):
        print(
            "tflite-fp16: error: the input file was truncated or changed while it was being read (SIGBUS); "
            "no output written",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"tflite-fp16: error: the conversion was killed by {name}; no output written", file=sys.stderr)
    return 128 + signum


def _report(pipe: int, event: str, path: str) -> None:
    try:
        os.write(pipe, f"{event} {path}\n".encode("utf-8", "surrogateescape"))
    except OSError:  # the supervisor is gone: nobody to tell
        pass


def _forward(child: int, signum: int) -> None:
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass


def _collect(read_end: int, temporaries: set[str]) -> None:
    """Keep the set of the child's temporary files up to date from its reports on the pipe."""
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                event, _, path = line.decode("utf-8", "surrogateescape").partition(" ")
                if event == "created":
                    temporaries.add(path)
                else:
                    temporaries.discard(path)


def _main(argv: list[str] | None) -> int:
    from .format.paths import pause_for_tests

    pause_for_tests("start")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["inspect"]:
        return _inspect(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("-q and -v exclude each other")
    many = args.output_dir is not None or args.in_place or args.check
    if sum(map(bool, (args.output_dir is not None, args.in_place, args.check))) > 1:
        parser.error("choose one of -o DIR, --in-place and --check")
    if many:
        if not args.paths:
            parser.error("give the model files or folders to work on")
        if args.dry_run:
            parser.error("--dry-run is for one model; --check tells for many")
    elif len(args.paths) != 2 and not (args.dry_run and len(args.paths) == 1):
        parser.error("give IN OUT (or IN with --dry-run; or -o DIR, --in-place or --check with several inputs)")
    if args.jobs is not None and (args.jobs < 1 or not (args.output_dir is not None or args.in_place)):
        parser.error("-j N (N >= 1) applies to -o DIR and --in-place")
    options = _options(args, parser)
    if args.to == "float32":
        _only_layout(options, parser)
    if args.check:
        return _check(args, options)
    if many:
        return _batch(args, options, parser)
    return _single(args, options)


def _only_layout(options: Options, parser: argparse.ArgumentParser) -> None:
    """--to float32 takes no conversion option (only --layout)."""
    plain = Options(layout=options.layout, progress=options.progress)
    if options != plain or options.inputs is not None:
        parser.error("--to float32 takes none of the float16 conversion options (only --layout, -v, -q, --json)")


def _single(args: argparse.Namespace, options: Options) -> int:
    source = args.paths[0]
    target = None if args.dry_run else args.paths[1]
    human: TextIO = sys.stderr if args.json == "-" else sys.stdout
    try:
        if args.to == "float32":
            from .tools.widen import widen

            report: Any = widen(source, target, layout=options.layout)
        else:
            from .api import rewrite

            report = rewrite(source, target, options)
    except VerificationError as error:
        print(f"tflite-fp16: {error}", file=sys.stderr)
        if error.report is not None and not args.quiet:
            for line in error.report.lines() if args.verbose else [f"  {line}" for line in _failures(error.report)]:
                print(line, file=sys.stderr)
            for line in error.report.layer_lines():
                print(line, file=sys.stderr)
            for note in error.report.notes:
                print(f"  note: {note}", file=sys.stderr)
        if error.report is not None:
            print(f"tflite-fp16: {error.report.hint()}", file=sys.stderr)
        return _failed(args, error, EXIT_VERIFY_FAILED)
    except _BAD_INPUT as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return _failed(args, error, EXIT_BAD_INPUT)
    except (RewriteError, OSError) as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return _failed(args, error, EXIT_FAILURE)
    except Exception as error:  # a bug: still one line, and no partial output (the writer cleans up)
        print(f"tflite-fp16: internal error: {type(error).__name__}: {error} (please report it)", file=sys.stderr)
        return _failed(args, error, EXIT_FAILURE)
    if args.to == "float32":
        if not args.quiet:
            print(report.summary(), file=human)
            if args.verbose:
                for t in report.widened:
                    print(
                        f"  widened subgraph {t.subgraph} tensor {t.tensor} {quote(t.name)}: {t.elements} values",
                        file=human,
                    )
                for s, t, name, why in report.float16_kept:
                    print(f"  float16 left subgraph {s} tensor {t} {quote(name)}: {why}", file=human)
    else:
        from .report import render_text

        out, err = render_text(report, -1 if args.quiet else (1 if args.verbose else 0))
        for line in err:
            print(line, file=sys.stderr)
        for line in out:
            print(line, file=human)
    if args.json:
        _emit_json(args.json, report.to_dict())
    return EXIT_OK


def _failed(args: argparse.Namespace, error: BaseException, status: int) -> int:
    if args.json:
        _emit_json(args.json, _error_json(args, error, status))
    return status


def _batch(args: argparse.Namespace, options: Options, parser: argparse.ArgumentParser) -> int:
    from .api import rewrite_many

    human: TextIO = sys.stderr if args.json == "-" else sys.stdout

    def on_result(result: Any) -> None:
        if not result.ok:
            print(f"tflite-fp16: {quote(result.input)}: {result.error}", file=sys.stderr)
        elif args.verbose:
            print(f"{quote(result.input)}: {result.report.summary()}", file=human)

    try:
        results = rewrite_many(
            args.paths,
            args.output_dir,
            in_place=args.in_place,
            jobs=args.jobs,
            to=args.to,
            options=options,
            progress=not args.quiet and args.json != "-",
            on_result=on_result,
        )
    except ValueError as error:
        parser.error(str(error))
    if not args.quiet:
        for line in _batch_table(results):
            print(line, file=human)
    if args.json:
        _emit_json(args.json, [r.to_dict() for r in results])
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILURE


def _batch_table(results: list[Any]) -> list[str]:
    counts = {status: sum(1 for r in results if r.status == status) for status in ("converted", "unchanged", "failed")}
    done = [r for r in results if r.ok]
    before = sum(r.report.size_before for r in done)
    after = sum(r.report.size_after or 0 for r in done)
    share = f" ({100.0 * after / before:.1f}%)" if before else ""
    return [
        f"{'files':<10} {len(results):>7,}",
        f"{'converted':<10} {counts['converted']:>7,}",
        f"{'unchanged':<10} {counts['unchanged']:>7,}   (nothing to convert)",
        f"{'failed':<10} {counts['failed']:>7,}",
        f"{'bytes':<10} {before:>7,} -> {after:,}{share}   (files written)",
    ]


def _check(args: argparse.Namespace, options: Options) -> int:
    from .api import check_many

    human: TextIO = sys.stderr if args.json == "-" else sys.stdout
    results = check_many(args.paths, options)
    for result in results:
        if result.error is not None:
            print(f"tflite-fp16: {quote(result.input)}: error: {result.error}", file=sys.stderr)
        elif result.would_convert and not args.quiet:
            names = ", ".join(quote(n, 60) for n in result.would_convert[:3])
            more = f" and {len(result.would_convert) - 3} more" if len(result.would_convert) > 3 else ""
            print(
                f"{quote(result.input)}: {len(result.would_convert)} tensors would convert to float16: {names}{more}",
                file=human,
            )
    found = sum(1 for r in results if r.would_convert)
    failed = sum(1 for r in results if r.error is not None)
    if not args.quiet:
        print(f"check: {len(results)} files, {found} with constants to convert, {failed} unreadable", file=human)
    if args.json:
        _emit_json(args.json, [r.to_dict() for r in results])
    if found:
        return EXIT_CHECK_FOUND
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _inspect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tflite-fp16 inspect", description="What is in a .tflite file, at a glance.")
    parser.add_argument("model", help=".tflite file")
    parser.add_argument("--json", action="store_true", help="print everything as JSON (documented in the README)")
    args = parser.parse_args(argv)
    try:
        from .tools.inspect import inspect_file, render

        info = inspect_file(args.model)
    except _BAD_INPUT as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RewriteError, OSError) as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        from .report import dumps

        print(dumps(info))
    else:
        print(render(info))
    return EXIT_OK


def _failures(verification: Any) -> list[str]:
    lines = verification.lines()
    failing = [line for line in lines if "FAIL" in line[:8]]
    shown = failing[:5]
    if len(failing) > 5:
        shown.append(f"  and {len(failing) - 5} more failing outputs (-v lists all)")
    return [line.strip() for line in shown]


if __name__ == "__main__":
    run()
