"""The ``tflite-fp16`` command: parse, call the public functions, print, exit.

:func:`run` (the console script, and ``python -m tflite_fp16``) supervises
:func:`main` in a child process: see :func:`run`. Only light modules are
imported here; the rest is imported inside :func:`main`, where an interrupt
still ends in one line. Every error ends in one line on stderr (a bug too: the
internal-error line, with the traceback under ``-v``) and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

from .errors import (
    InvalidInputsError,
    InvalidModelError,
    LossyModelError,
    MissingDependencyError,
    OutputError,
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
from .text import counted, quote
from .version import __version__
from .work import die_with_parent

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_VERIFY_FAILED = 3
EXIT_CHECK_FOUND = 4
_BAD_INPUT = (InvalidModelError, UnsupportedModelError, LossyModelError, InvalidInputsError, MissingDependencyError)
MAX_JOBS = 32  # tools.batch.MAX_JOBS, said here without importing the batch machinery
MAX_STDIN_BYTES = 8 << 30  # a model read from standard input is copied to a temporary file of at most this size
STDIN = "-"

USAGE = """tflite-fp16 [options] IN OUT              convert one model ('-': standard input or output)
       tflite-fp16 [options] --dry-run IN          say what would be converted
       tflite-fp16 [options] -o DIR | --in-place PATH...   many models (files, folders of *.tflite)
       tflite-fp16 [options] --check PATH...        exit 4 if a model still has a float32 constant to convert
       tflite-fp16 inspect [--json FILE|-] PATH...  what is in a model"""

# Options fields by the flag that sets them: messages from Options name the flag.
_FLAGS = {
    "min_elements": "--min-elements",
    "skip_ops": "--skip-op",
    "max_cast_error": "--max-cast-error",
    "keep_from": "--keep-from",
    "verify_timeout": "--verify-timeout",
    "shapes": "--shape",
    "tolerance": "--tolerance",
    "metric": "--metric",
    "lossy": "--lossy",
    "layout": "--layout",
    "keep": "--keep",
    "plot": "--plot",
}


class _Parser(argparse.ArgumentParser):
    """argparse without prefix abbreviations (a flag added later must not change what an old
    abbreviation means), with errors in one line that suggest the closest flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            flags = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
            words = []
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.6)
                words.append(
                    f"{quote(word)} (did you mean {close[0]}?)" if word.startswith("-") and close else quote(word)
                )
            message = f"unknown argument{'s' if len(words) > 1 else ''} {', '.join(words)}"
        message = _flag_names(message)
        if "did you mean" not in message:
            message += f" ({self.prog} --help lists the options)"
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def _flag_names(message: str) -> str:
    """A message from :class:`Options` in the command's words: ``min_elements`` -> ``--min-elements``."""
    return re.sub(r"^(" + "|".join(_FLAGS) + r")(?= must|:| takes)", lambda m: _FLAGS[m.group(1)], message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tflite-fp16",
        usage=USAGE,
        description="Store the float32 weights of a TFLite model as float16 (with DEQUANTIZE ops), "
        "as TensorFlow's float16 post-training quantization does, from the .tflite file alone. "
        "Exit status: 0 done, 1 failure (for many inputs: any failed), 2 bad input or usage, 3 verification failed "
        "(or --auto cannot meet the tolerance), 4 --check found a constant to convert.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="IN OUT: convert one model (OUT may equal IN; '-' is standard input or output); with -o DIR, "
        "--in-place or --check: model files and folders (searched for *.tflite)",
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

    many = parser.add_argument_group("many models (and: tflite-fp16 inspect PATH... [--json FILE|-])")
    many.add_argument("-o", "--output-dir", metavar="DIR", help="convert every input into DIR, keeping relative paths")
    many.add_argument("--in-place", action="store_true", help="convert every input where it is")
    many.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help=f"convert N files at once in separate processes (default: the number of cores; at most {MAX_JOBS}, "
        "and never more than the files)",
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
        help="write the report as JSON to FILE ('-': standard output, and nothing else there); "
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
        "--inputs (without them, on the probes); at most 40 LiteRT runs; the result is verified",
    )
    check.add_argument(
        "--save-keep",
        metavar="FILE",
        help="with --auto: write the tensors the search kept float32 to FILE (a keep file)",
    )
    select.add_argument(
        "--keep-from",
        metavar="FILE",
        help="keep the tensors a keep file names float32 (exact names with their shape and data, or patterns; "
        "what --save-keep writes)",
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


def _side_outputs(args: argparse.Namespace, inputs: list[str], output: str | None) -> None:
    """Check every file the command will write besides the model (before any work): a writable
    place, not a directory, not an input, not the model, not each other."""
    from .format.paths import check_side_outputs

    suffixes = {
        "JSON report": "a .json file, or - for standard output",
        "keep file": "a .txt file",
        "plot": "a .png file",
    }
    for role, path in (("JSON report", args.json), ("keep file", args.save_keep), ("plot", args.plot)):
        if path is not None and path != STDIN and path.endswith(".tflite"):
            raise OutputError(
                f"cannot write {quote(path)}: the {role} would replace a .tflite file; give it a path of its own "
                f"({suffixes[role]})"
            )
    taken = [("input", path) for path in inputs if path != STDIN] + ([("output", output)] if output else [])
    check_side_outputs([("JSON report", args.json), ("keep file", args.save_keep), ("plot", args.plot)], taken)


def _emit_json(destination: str, data: Any, written: str | None = None) -> int:
    """Write the JSON report (atomically; '-': standard output). On failure, one line that names
    the path (and the model, if one was written) and exit status 1; else 0."""
    from .format.writer import copy_file
    from .report import dumps

    text = dumps(data) + "\n"
    if destination == STDIN:
        sys.stdout.write(text)
        sys.stdout.flush()
        return EXIT_OK
    try:
        copy_file(text.encode("utf-8"), destination)
    except OSError as error:
        model = f"; the model was written to {quote(written)}" if written else ""
        print(f"tflite-fp16: error: the JSON report: {error}{model}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _error_json(args: argparse.Namespace, error: BaseException, status: int) -> dict[str, Any]:
    from .report import verification_to_dict

    search = getattr(error, "search", None)
    return {
        "tool": "tflite-fp16",
        "version": __version__,
        "input": args.paths[0] if args.paths else None,
        "output": args.paths[1] if len(args.paths) > 1 else None,
        "error": {"type": type(error).__name__, "message": str(error), "exit_status": status},
        "verify": verification_to_dict(getattr(error, "report", None)),
        "auto": search.to_dict() if search is not None else None,
    }


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP, SIGQUIT) turned into an exception, so that the
    same clean-up as for Ctrl-C runs (no temporary file is left)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status (0 ok, 1 failure, 2 bad input or usage, 3
    verification failed, 4 --check found a constant to convert, 128 + N stopped by signal N).
    Nothing escapes: a bug prints the internal-error line (the traceback too with -v)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    import warnings

    from .errors import Tflite16Warning

    warnings.simplefilter("ignore", Tflite16Warning)  # the command prints the report's warnings itself
    try:
        return _main(arguments)
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, "signum", signal.SIGINT)
        written = getattr(interrupt, "written", None)
        if written is not None:
            shown = ", ".join(quote(path) for path in written[:10]) + (
                f" and {len(written) - 10} more" if len(written) > 10 else ""
            )
            done = f"{len(written)} file{'s' if len(written) != 1 else ''} written before it stopped"
            print(
                f"tflite-fp16: interrupted ({signal.Signals(signum).name}); {done}{': ' + shown if written else ''}; "
                f"no other output written",
                file=sys.stderr,
            )
        else:
            print(f"tflite-fp16: interrupted ({signal.Signals(signum).name}); no output written", file=sys.stderr)
        return 128 + signum
    except SystemExit:
        raise
    except Exception as error:  # a bug: one line (the writer has cleaned up: no partial output)
        _internal_error(error, "-v" in arguments or "--verbose" in arguments)
        return EXIT_FAILURE


def _internal_error(error: BaseException, verbose: bool) -> None:
    print(
        f"tflite-fp16: internal error: {type(error).__name__}: {' '.join(str(error).split())} (please report it"
        f"{'' if verbose else '; -v shows where'})",
        file=sys.stderr,
    )
    if verbose:
        traceback.print_exception(error, file=sys.stderr)


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
    termination signals turned into exceptions (and dies with the parent); the parent forwards
    signals to it, and when the child dies from a signal no handler can survive (SIGBUS, when
    the input file is truncated while it is memory-mapped; SIGKILL; a crash), the parent
    removes the temporary files the child reported and says so in one line."""
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
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        status = EXIT_FAILURE
        try:
            for number in _TERMINATION:
                signal.signal(number, _raise_once)
            if not die_with_parent(parent):
                raise Terminated(signal.SIGTERM)
            from .format import paths

            paths.temp_listeners.append(lambda event, path: _report(write_end, event, path))
            status = main(argv)
        except SystemExit as exit_:  # argparse: --help, --version
            status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else EXIT_BAD_INPUT)
        except KeyboardInterrupt as interrupt:  # a signal before main() took over
            status = 128 + getattr(interrupt, "signum", signal.SIGINT)
        except BaseException as error:  # cannot happen (main catches everything), but never silently
            _internal_error(error, "-v" in argv or "--verbose" in argv)
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


def _main(argv: list[str]) -> int:
    from .format.paths import pause_for_tests

    pause_for_tests("start")
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
        if STDIN in args.paths:
            parser.error("'-' (standard input) is for one model: IN OUT")
    elif len(args.paths) != 2 and not (args.dry_run and len(args.paths) == 1):
        parser.error("give IN OUT (or IN with --dry-run; or -o DIR, --in-place or --check with several inputs)")
    if args.jobs is not None and (args.jobs < 1 or not (args.output_dir is not None or args.in_place)):
        parser.error("-j N (N >= 1) applies to -o DIR and --in-place")
    if not many and len(args.paths) == 2 and args.paths[1] == STDIN and not args.dry_run:
        if args.json == STDIN:
            parser.error("OUT '-' and --json - both want standard output; give the JSON report a file")
        if sys.stdout.isatty():
            parser.error("refusing to write a model to a terminal: redirect standard output (> model_fp16.tflite)")
    options = _options(args, parser)
    if args.to == "float32":
        _only_layout(options, parser)
    try:
        if many:
            _side_outputs(args, list(args.paths), None)
        else:
            out = None if args.dry_run else args.paths[1]
            if out is not None and out != STDIN:
                from .format.paths import check_output

                check_output(out)
            _side_outputs(args, [args.paths[0]], out)
    except OutputError as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if args.check:
        return _check(args, options)
    if many:
        return _batch(args, options)
    return _single(args, options)


def _only_layout(options: Options, parser: argparse.ArgumentParser) -> None:
    """--to float32 takes no conversion option (only --layout)."""
    plain = Options(layout=options.layout, progress=options.progress)
    if options != plain or options.inputs is not None:
        parser.error("--to float32 takes none of the float16 conversion options (only --layout, -v, -q, --json)")


@contextmanager
def _from_stdin() -> Iterator[str]:
    """Standard input copied to a temporary file (read whole, at most MAX_STDIN_BYTES), removed after."""
    handle = tempfile.NamedTemporaryFile(prefix="tflite-fp16-stdin-", suffix=".tflite", delete=False)
    try:
        with handle:
            total = 0
            while True:
                block = sys.stdin.buffer.read(1 << 20)
                if not block:
                    break
                total += len(block)
                if total > MAX_STDIN_BYTES:
                    raise InvalidModelError(
                        f"standard input holds more than {MAX_STDIN_BYTES >> 30} GiB: give the model as a file"
                    )
                handle.write(block)
        yield handle.name
    finally:
        os.unlink(handle.name)


@contextmanager
def _to_stdout() -> Iterator[str]:
    """A temporary path to write the model to; copied to standard output when the block succeeds."""
    folder = tempfile.mkdtemp(prefix="tflite-fp16-stdout-")
    path = os.path.join(folder, "model.tflite")
    try:
        yield path
        with open(path, "rb") as model:
            while block := model.read(1 << 20):
                sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.rmdir(folder)


def _convert(args: argparse.Namespace, options: Options, source: str, target: str | None) -> Any:
    if args.to == "float32":
        from .tools.widen import widen

        return widen(source, target, layout=options.layout)
    from .api import rewrite

    return rewrite(source, target, options)


def _single(args: argparse.Namespace, options: Options) -> int:
    import dataclasses

    source = args.paths[0]
    target = None if args.dry_run else args.paths[1]
    to_stdout = target == STDIN
    human: TextIO = sys.stderr if (args.json == STDIN or to_stdout) else sys.stdout
    read_from = source

    def said(error: BaseException) -> str:
        """The error's message, with standard input's temporary copy called what it is."""
        text = _flag_names(str(error))
        return text.replace(quote(read_from), "standard input") if source == STDIN else text

    try:
        with _from_stdin() if source == STDIN else _nothing(source) as read_from:
            with _to_stdout() if to_stdout else _nothing(target) as write_to:
                report: Any = _convert(args, options, read_from, write_to)
        if source == STDIN or to_stdout:
            report = dataclasses.replace(report, input=source, output=target)
    except VerificationError as error:
        print(f"tflite-fp16: {said(error)}", file=sys.stderr)
        if error.report is not None and not args.quiet:
            for line in error.report.lines() if args.verbose else [f"  {line}" for line in _failures(error.report)]:
                print(line, file=sys.stderr)
            for line in error.report.layer_lines():
                print(line, file=sys.stderr)
            for note in error.report.notes:
                print(f"  note: {note}", file=sys.stderr)
        hint = error.report.hint() if error.report is not None else ""
        if hint:
            print(f"tflite-fp16: {hint}", file=sys.stderr)
        return _failed(args, error, EXIT_VERIFY_FAILED)
    except _BAD_INPUT as error:
        print(f"tflite-fp16: error: {said(error)}", file=sys.stderr)
        return _failed(args, error, EXIT_BAD_INPUT)
    except (RewriteError, OSError) as error:
        print(f"tflite-fp16: error: {said(error)}", file=sys.stderr)
        return _failed(args, error, EXIT_FAILURE)
    if args.to == "float32":
        if not args.quiet:
            for line in _widen_lines(report, args.verbose):
                print(line, file=human)
    else:
        from .report import render_text

        out, err = render_text(report, -1 if args.quiet else (1 if args.verbose else 0))
        for line in err:
            print(line, file=sys.stderr)
        for line in out:
            print(line, file=human)
    if args.json:
        written = None if args.dry_run or to_stdout else target
        return _emit_json(args.json, report.to_dict(), written)
    return EXIT_OK


@contextmanager
def _nothing(value: Any) -> Iterator[Any]:
    yield value


def _widen_lines(report: Any, verbose: bool) -> list[str]:
    lines = [report.summary()]
    if verbose:
        from .report import metadata_line

        for t in report.widened:
            lines.append(f"  widened subgraph {t.subgraph} tensor {t.tensor} {quote(t.name)}: {t.elements} values")
        for s, t, name, why in report.float16_kept:
            lines.append(f"  float16 left subgraph {s} tensor {t} {quote(name)}: {why}")
        lines.extend(metadata_line(change, report.output is None) for change in report.metadata)
        for index, before, after in report.versions_lowered:
            lines.append(
                f"  operator code {index} (DEQUANTIZE) version {before} -> {after}: what its operators need now"
            )
    return lines


def _failed(args: argparse.Namespace, error: BaseException, status: int) -> int:
    if args.json:
        _emit_json(args.json, _error_json(args, error, status))
    return status


def _decisions(result: Any) -> str:
    """A file that kept constants float32 by choice (lossy, tolerance, options): its counts."""
    report = result.report
    plan = getattr(report, "plan", None)
    if plan is None:
        return ""
    chosen = {
        reason: n
        for reason, n in plan.kept_by_reason().items()
        if reason not in ("subgraph_output", "subgraph_input", "variable", "written_by_operator", "unread")
    }
    if not chosen:
        return ""
    kept = ", ".join(f"{n} {reason}" for reason, n in chosen.items())
    return f"{quote(result.input)}: {report.tensors_converted} converted, {sum(chosen.values())} kept float32 ({kept})"


def _batch(args: argparse.Namespace, options: Options) -> int:
    import dataclasses

    from .api import rewrite_many

    human: TextIO = sys.stderr if args.json == STDIN else sys.stdout

    def on_result(result: Any) -> None:
        if not result.ok:
            shown = quote(result.input)
            message = result.error if shown in result.error else f"{shown}: {result.error}"
            print(f"tflite-fp16: error: {message}", file=sys.stderr)
        elif args.verbose:
            print(f"{quote(result.input)}: {result.report.summary()}", file=human)
        elif not args.quiet and (line := _decisions(result)):
            print(line, file=human)

    try:
        results = rewrite_many(
            args.paths,
            args.output_dir,
            in_place=args.in_place,
            jobs=args.jobs,
            to=args.to,
            options=dataclasses.replace(options, progress=not args.quiet and args.json != STDIN),
            on_result=on_result,
        )
    except (OutputError, ValueError, TypeError) as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if not args.quiet:
        for line in _batch_table(results):
            print(line, file=human)
    status = EXIT_OK if all(r.ok for r in results) else EXIT_FAILURE
    if args.json:
        return _emit_json(args.json, [r.to_dict() for r in results]) or status
    return status


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

    human: TextIO = sys.stderr if args.json == STDIN else sys.stdout
    results = check_many(args.paths, options)
    for result in results:
        if result.error is not None:
            shown = quote(result.input)
            message = result.error if shown in result.error else f"{shown}: {result.error}"
            print(f"tflite-fp16: error: {message}", file=sys.stderr)
        elif result.would_convert and not args.quiet:
            names = ", ".join(
                f"subgraph {s} tensor {t} {quote(name, 60)}"
                for (s, t), name in list(zip(result.tensors, result.would_convert))[:3]
            )
            more = f" and {len(result.would_convert) - 3} more" if len(result.would_convert) > 3 else ""
            print(
                f"{quote(result.input)}: {counted(len(result.would_convert), 'tensor')} would convert to float16: "
                f"{names}{more}",
                file=human,
            )
    found = sum(1 for r in results if r.would_convert)
    failed = sum(1 for r in results if r.error is not None)
    if not args.quiet:
        print(
            f"check: {counted(len(results), 'file')}, {found} with constants to convert, {failed} unreadable",
            file=human,
        )
    if args.json:
        written = _emit_json(args.json, [r.to_dict() for r in results])
        if written:
            return written
    if found:
        return EXIT_CHECK_FOUND
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _inspect(argv: list[str]) -> int:
    parser = _Parser(
        prog="tflite-fp16 inspect",
        description="What is in a .tflite file, at a glance: size, layout, signatures, operators, tensors by "
        "type, metadata, features, and what a float16 rewrite would do.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="model files and folders (searched for *.tflite)")
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="write everything as JSON to FILE ('-': standard output); for several files, a list",
    )
    args = parser.parse_args(argv)
    from .format.paths import check_side_outputs
    from .tools.batch import find_models
    from .tools.inspect import inspect_file, render

    try:
        if args.json is not None and args.json != STDIN and args.json.endswith(".tflite"):
            raise OutputError(f"cannot write {quote(args.json)}: a JSON report would replace a .tflite file")
        check_side_outputs([("JSON report", args.json)], [("input", p) for p in args.paths])
        models, refused = find_models(args.paths)
    except OutputError as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    status = EXIT_OK
    found: list[dict[str, Any]] = []
    for result in refused:
        print(f"tflite-fp16: error: {result.error}", file=sys.stderr)
        status = EXIT_BAD_INPUT
    for path, _ in models:
        try:
            info = inspect_file(path)
        except _BAD_INPUT as error:
            print(f"tflite-fp16: error: {error}", file=sys.stderr)
            status = max(status, EXIT_BAD_INPUT)
            continue
        except (RewriteError, OSError) as error:
            print(f"tflite-fp16: error: {error}", file=sys.stderr)
            status = EXIT_FAILURE
            continue
        found.append(info)
        if args.json != STDIN:
            if len(models) > 1 and found[:-1]:
                print()
            print(render(info))
    if args.json is not None:
        data: Any = found[0] if len(args.paths) == 1 and len(models) == 1 and found else found
        return _emit_json(args.json, data) or status
    return status


def _failures(verification: Any) -> list[str]:
    lines = verification.lines()
    failing = [line for line in lines if "FAIL" in line[:8]]
    shown = failing[:5]
    if len(failing) > 5:
        shown.append(f"  and {len(failing) - 5} more failing outputs (-v lists all)")
    return [line.strip() for line in shown]


if __name__ == "__main__":
    run()
