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
from typing import Any, Dict, List, Optional, Set, TextIO

from . import __version__
from .errors import (
    InvalidInputsError, InvalidModelError, LossyModelError, MissingDependencyError, RewriteError,
    UnsupportedModelError, VerificationError,
)
from .options import DEFAULT_MAX_CAST_ERROR, DEFAULT_TOLERANCE, LOSSY_POLICIES, Options

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_VERIFY_FAILED = 3
_BAD_INPUT = (InvalidModelError, UnsupportedModelError, LossyModelError, InvalidInputsError, MissingDependencyError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflite-fp16",
        description="Store the float32 weights of a TFLite model as float16 (with DEQUANTIZE ops), "
        "as TensorFlow's float16 post-training quantization does, from the .tflite file alone. "
        "Exit status: 0 done, 1 failure, 2 bad input or usage, 3 verification failed (or --auto cannot meet the tolerance).",
    )
    parser.add_argument("input", help="float32 .tflite model")
    parser.add_argument("output", nargs="?", help="where to write the float16 model (may equal input)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be converted and why not the rest; write nothing")

    select = parser.add_argument_group("what to convert")
    select.add_argument("--keep", action="append", default=[], metavar="PATTERN",
                        help="keep tensors whose name (or a ';'-separated part of it) matches PATTERN "
                        "(fnmatch, e.g. '*/attention/*') float32; repeatable")
    select.add_argument("--skip-op", action="append", default=[], metavar="NAME",
                        help="keep every constant this operator reads float32: a schema name (RESIZE_BILINEAR) "
                        "or CUSTOM:name; repeatable")
    select.add_argument("--min-elements", type=int, default=0, metavar="N",
                        help="keep constants of fewer than N values float32 (default 0: convert all)")
    select.add_argument("--convert-custom-op-inputs", action="store_true",
                        help="also convert constants read by custom operators (only for kernels that take any float32 input)")
    select.add_argument("--lossy", choices=LOSSY_POLICIES, default="keep",
                        help="constants float16 cannot hold faithfully (beyond +-65504, or cast error above "
                        "--max-cast-error): keep them float32 (default), convert them as TensorFlow does, or refuse (error)")
    select.add_argument("--max-cast-error", type=float, default=DEFAULT_MAX_CAST_ERROR, metavar="X",
                        help=f"relative L2 cast error above which a constant is lossy (default {DEFAULT_MAX_CAST_ERROR:g})")

    output = parser.add_argument_group("output")
    output.add_argument("--layout", choices=("auto", "normal", "offset"), default="auto",
                        help="where buffer data goes: inside the flatbuffer (normal, up to 2 GiB), after it (offset: "
                        "Buffer.offset/size, as TensorFlow writes large models), or normal whenever it fits (auto, the default)")
    output.add_argument("-v", "--verbose", action="store_true", help="one line per converted and per kept tensor")
    output.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    output.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE ('-': stdout, and nothing else there)")

    check = parser.add_argument_group("verification (needs: pip install 'tflite-fp16[verify]')")
    check.add_argument("--verify", action="store_true",
                       help="run both models in LiteRT and compare every output before writing; exit 3 (and write "
                       "nothing) when an output's relative L2 error exceeds --tolerance or new non-finite values appear")
    check.add_argument("--inputs", metavar="FILE.npz",
                       help="verify on these arrays (named after the inputs; one extra leading axis = several samples) "
                       "instead of the probes (N(0,1), zeros, N(0,1) x 1000)")
    check.add_argument("--tolerance", type=float, default=None, metavar="T",
                       help=f"largest relative L2 error accepted per output (default {DEFAULT_TOLERANCE:g})")
    check.add_argument("--probes", action="store_true", default=None,
                       help="with --inputs: run the three probes too (--auto always does)")
    check.add_argument("--auto", action="store_true",
                       help="search the constants to keep float32 so that every output stays within --tolerance on "
                       "--inputs and the probes (runs the model in LiteRT; the result is verified)")
    check.add_argument("--save-keep", metavar="FILE", help="with --auto: write the names the search kept float32 to FILE")
    select.add_argument("--keep-from", metavar="FILE",
                        help="keep the tensors named in FILE float32 (one name or pattern a line, as --save-keep writes)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Options:
    if (args.inputs is not None or args.tolerance is not None or args.probes) and not (args.verify or args.auto):
        parser.error("--inputs, --probes and --tolerance apply to --verify and --auto; add one of them")
    if args.save_keep is not None and not args.auto:
        parser.error("--save-keep writes what --auto chose; add --auto")
    if args.verify and args.dry_run:
        parser.error("--verify needs an output to check; drop --dry-run")
    try:
        return Options(
            keep=args.keep, skip_ops=args.skip_op, min_elements=args.min_elements,
            custom_op_inputs=args.convert_custom_op_inputs, lossy=args.lossy, max_cast_error=args.max_cast_error,
            layout=args.layout, verify=args.verify, inputs=args.inputs, probes=args.probes,
            tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
            auto=args.auto, keep_from=args.keep_from, save_keep=args.save_keep, progress=not args.quiet,
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def _emit_json(destination: str, data: Dict[str, Any]) -> None:
    from .report import dumps

    text = dumps(data) + "\n"
    if destination == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(destination, "w", encoding="utf-8") as handle:
            handle.write(text)


def _error_json(args: argparse.Namespace, error: BaseException, status: int) -> Dict[str, Any]:
    from .report import verification_to_dict

    return {
        "tool": "tflite-fp16",
        "version": __version__,
        "input": args.input,
        "output": args.output,
        "error": {"type": type(error).__name__, "message": str(error), "exit_status": status},
        "verify": verification_to_dict(getattr(error, "report", None)),
    }


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP, SIGQUIT) turned into an exception, so that the
    same clean-up as for Ctrl-C runs (no temporary file is left)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def main(argv: Optional[List[str]] = None) -> int:
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


def _supervise(argv: List[str]) -> int:
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
            from . import output

            output.temp_listeners.append(lambda event, path: _report(write_end, event, path))
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
    temporaries: Set[str] = set()
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
        print("tflite-fp16: error: the input file was truncated or changed while it was being read (SIGBUS); "
              "no output written", file=sys.stderr)
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


def _collect(read_end: int, temporaries: Set[str]) -> None:
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


def _main(argv: Optional[List[str]]) -> int:
    from .output import _pause_for_tests

    _pause_for_tests("start")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.output is None and not args.dry_run:
        parser.error("the output path is required (or use --dry-run)")
    if args.quiet and args.verbose:
        parser.error("-q and -v exclude each other")
    options = _options(args, parser)
    human: TextIO = sys.stderr if args.json == "-" else sys.stdout
    status = EXIT_OK
    try:
        from .api import rewrite

        report = rewrite(args.input, None if args.dry_run else args.output, options)
    except VerificationError as error:
        status = EXIT_VERIFY_FAILED
        print(f"tflite-fp16: {error}", file=sys.stderr)
        if error.report is not None and not args.quiet:
            for line in error.report.lines() if args.verbose else [f"  {line}" for line in _failures(error.report)]:
                print(line, file=sys.stderr)
        failure: Optional[BaseException] = error
    except _BAD_INPUT as error:
        status, failure = EXIT_BAD_INPUT, error
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
    except (RewriteError, OSError) as error:
        status, failure = EXIT_FAILURE, error
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
    except Exception as error:  # a bug: still one line, and no partial output (the writer cleans up)
        status, failure = EXIT_FAILURE, error
        print(f"tflite-fp16: internal error: {type(error).__name__}: {error} (please report it)", file=sys.stderr)
    else:
        failure = None
    if failure is not None:
        if args.json:
            _emit_json(args.json, _error_json(args, failure, status))
        return status

    from .report import render_text

    out, err = render_text(report, -1 if args.quiet else (1 if args.verbose else 0))
    for line in err:
        print(line, file=sys.stderr)
    for line in out:
        print(line, file=human)
    if args.json:
        _emit_json(args.json, report.to_dict())
    return status


def _failures(verification: Any) -> List[str]:
    lines = verification.lines()
    failing = [line for line in lines if "FAIL" in line[:8]]
    shown = failing[:5]
    if len(failing) > 5:
        shown.append(f"  and {len(failing) - 5} more failing outputs (-v lists all)")
    return [line.strip() for line in shown]


if __name__ == "__main__":
    run()
