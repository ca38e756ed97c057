"""Models over 2 GB: the offset layout, end to end, on this machine.

    python benchmarks/bench_large.py [--workdir DIR] [--keep]

Needs about 16 GB of free disk in DIR and a few minutes. Builds:

* a ~5 GB float32 model (19 FULLY_CONNECTED layers of 8192 x 8192; buffer data
  after the flatbuffer, as TensorFlow writes models over 2 GB), converts it
  with ``tflite-fp16 IN OUT`` to a ~2.5 GB float16 model, which must again use
  the offset layout (it does not fit in a flatbuffer);
* a ~3 GB float32 model in the offset layout, whose ~1.5 GB float16 version
  fits in a normal flatbuffer and must come out in the normal layout.

Both outputs are loaded and run in the LiteRT interpreter (builtin kernels,
each run in a fresh process) and compared with the float32 models; time and
peak memory of the rewriter are printed next to the NumPy baseline's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import models
from common import CLI, HERE, compare, mb, remove

RUNNER = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
interpreter = Interpreter(model_path=sys.argv[1], experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
runner = interpreter.get_signature_runner("serving_default")
x = np.random.default_rng(0).standard_normal((1, int(sys.argv[2])), dtype=np.float32)
y = runner(input=x)["output"]
np.save(sys.argv[3], y)
"""


def run_in_litert(model: Path, width: int, out: Path) -> object:
    import numpy as np

    subprocess.run([sys.executable, "-c", RUNNER, str(model), str(width), str(out)], check=True, capture_output=True)
    return np.load(out)


def layout_of(path: Path) -> str:
    import tflite

    with open(path, "rb") as handle:
        head = handle.read(1 << 20)  # the tables of these models are small
    model = tflite.Model.GetRootAs(head, 0)
    return "offset" if any(model.Buffers(i).Offset() > 1 for i in range(model.BuffersLength())) else "normal"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the model files")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tflite-fp16-large-"))
    workdir.mkdir(parents=True, exist_ok=True)
    import numpy as np

    failures = []
    width = 8192
    for label, layers, expected_layout in (("5 GB", 19, "offset"), ("3 GB", 11, "normal")):
        source = workdir / f"fc_{label.replace(' ', '')}.fp32.tflite"
        target = workdir / f"fc_{label.replace(' ', '')}.fp16.tflite"
        base_out = workdir / "baseline.bin"
        size = models.fc_chain(source, width=width, layers=layers, layout="offset")
        commands = {
            "baseline": [sys.executable, str(HERE / "baseline.py"), str(source), str(base_out)],
            "tflite-fp16": [CLI, str(source), str(target)],
        }
        results = compare(
            commands,
            args.repeats,
            before_each=lambda name, target=target, base_out=base_out: remove(
                target if name == "tflite-fp16" else base_out
            ),
        )
        remove(base_out)
        (base_time, base_peak), (time, peak) = results["baseline"], results["tflite-fp16"]
        out_size = target.stat().st_size
        layout = layout_of(target)
        reference = run_in_litert(source, width, workdir / "reference.npy")
        converted = run_in_litert(target, width, workdir / "converted.npy")
        error = float(np.max(np.abs(reference - converted)))
        scale = float(np.max(np.abs(reference)))
        print(
            f"{label} float32 model ({layers} layers of {width} x {width}, offset layout): {mb(size)} -> {mb(out_size)}"
        )
        print(f"  output layout {layout} (expected {expected_layout})")
        print(f"  wall time   baseline {base_time:.2f} s   tflite-fp16 {time:.2f} s   ratio {time / base_time:.2f}")
        print(
            f"  peak memory baseline {mb(base_peak)}   tflite-fp16 {mb(peak)}   tflite-fp16 / input file {peak / size:.2f}"
        )
        print(f"  LiteRT (builtin kernels): max |float32 - float16| = {error:.3g} (outputs up to {scale:.3g})")
        print(
            json.dumps(
                {
                    "case": label,
                    "input_bytes": size,
                    "output_bytes": out_size,
                    "layout": layout,
                    "baseline_s": round(base_time, 3),
                    "rewrite_s": round(time, 3),
                    "rewrite_peak_bytes": peak,
                    "max_abs_error": error,
                }
            )
        )
        if layout != expected_layout:
            failures.append(f"{label}: layout {layout}")
        if not error <= 1e-2 * max(scale, 1.0):
            failures.append(f"{label}: outputs differ by {error}")
        if not args.keep:
            remove(source, target)
        remove(workdir / "reference.npy", workdir / "converted.npy")
    print("all checks passed" if not failures else "failed: " + ", ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
