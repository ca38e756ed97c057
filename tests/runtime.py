"""Run a model in the LiteRT interpreter on seeded random inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

RESOLVERS = {
    "default": OpResolverType.AUTO,  # builtin kernels + the default XNNPACK delegate
    "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
}


def _random(rng: np.random.Generator, shape, dtype) -> np.ndarray:  # type: ignore[no-untyped-def]
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 16, shape).astype(dtype)


def run(path: Path, resolver: str = "default", seed: int = 0) -> dict[str, np.ndarray]:
    """Every output of every signature (or of the default subgraph), by name.

    Inputs follow the corpus README: N(0,1) floats, integers in [0, 16),
    dynamic dimensions set to 1, from numpy's default_rng(seed).
    """
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=RESOLVERS[resolver])
    rng = np.random.default_rng(seed)
    outputs: dict[str, np.ndarray] = {}
    signatures = interpreter.get_signature_list()
    if signatures:
        for key in sorted(signatures):
            runner = interpreter.get_signature_runner(key)
            feeds = {}
            for name, detail in sorted(runner.get_input_details().items()):
                signature = detail["shape_signature"]
                shape = [1 if d < 0 else d for d in signature] if len(signature) else list(detail["shape"])
                feeds[name] = _random(rng, shape, detail["dtype"])
            for name, value in runner(**feeds).items():
                outputs[f"{key}/{name}"] = value
        return outputs
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _random(rng, detail["shape"], detail["dtype"]))
    interpreter.invoke()
    for detail in interpreter.get_output_details():
        outputs[detail["name"]] = interpreter.get_tensor(detail["index"]).copy()
    return outputs


def max_abs_error(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> float:
    assert reference.keys() == other.keys()
    return max(float(np.max(np.abs(reference[k].astype(np.float64) - other[k].astype(np.float64)))) for k in reference)


def run_in_child(path: Path, resolver: str = "default", seed: int = 0) -> dict[str, np.ndarray]:
    """:func:`run` in a child process, so that a model that crashes LiteRT ends that process, not the
    tests; a crash is an AssertionError naming the signal."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "outputs.npz"
        code = (
            "import sys, numpy as np\n"
            f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
            "import runtime\n"
            f"np.savez({str(result)!r}, **runtime.run(__import__('pathlib').Path({str(path)!r}), {resolver!r}, {seed}))\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, f"LiteRT failed on {path} (exit status {done.returncode}): {done.stderr[-500:]}"
        with np.load(result) as arrays:
            return {name: arrays[name] for name in arrays.files}
