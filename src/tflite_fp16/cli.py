"""The ``tflite-fp16`` command: a thin layer over :func:`tflite_fp16.rewrite`."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__
from .api import rewrite
from .errors import InvalidModelError, RewriteError, UnsupportedModelError

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflite-fp16",
        description="Store the float32 weights of a TFLite model as float16 (with DEQUANTIZE ops), "
        "as TensorFlow's float16 post-training quantization does, from the .tflite file alone.",
    )
    parser.add_argument("input", help="float32 .tflite model")
    parser.add_argument("output", nargs="?", help="where to write the float16 model (may equal input)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be converted and why not the rest; write nothing")
    parser.add_argument(
        "--layout",
        choices=("auto", "normal", "offset"),
        default="auto",
        help="where buffer data goes: inside the flatbuffer (normal, up to 2 GiB), after it (offset: "
        "Buffer.offset/size, as TensorFlow writes large models), or normal whenever it fits (auto, the default)",
    )
    parser.add_argument(
        "--keep", action="append", default=[], metavar="PATTERN",
        help="keep tensors whose name matches PATTERN (fnmatch, e.g. '*/attention/*') float32; repeatable",
    )
    parser.add_argument(
        "--min-elements", type=int, default=0, metavar="N",
        help="keep constants of fewer than N values float32 (default 0: convert all, as TensorFlow does)",
    )
    parser.add_argument(
        "--convert-custom-op-inputs", action="store_true",
        help="also convert constants read by custom operators (only for kernels that take any float32 input)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command; return its exit status (0 ok, 2 bad input, 1 anything else)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.output is None and not args.dry_run:
        parser.error("the output path is required (or use --dry-run)")
    if args.min_elements < 0:
        parser.error("--min-elements must be 0 or more")
    try:
        report = rewrite(
            args.input, args.output, dry_run=args.dry_run, layout=args.layout,
            keep=args.keep, min_elements=args.min_elements, custom_op_inputs=args.convert_custom_op_inputs,
        )
    except (InvalidModelError, UnsupportedModelError) as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RewriteError, OSError) as error:
        print(f"tflite-fp16: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("tflite-fp16: interrupted; no output written", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, and no partial output (the writer cleans up)
        print(f"tflite-fp16: internal error: {type(error).__name__}: {error} (please report it)", file=sys.stderr)
        return EXIT_FAILURE
    if args.dry_run:
        print(report.plan.describe())
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
