"""How a user's typed code calls the library; CI checks it with ``mypy --strict`` (and
tests/test_first_use.py checks that mypy catches a misspelled option)."""

from __future__ import annotations

from pathlib import Path

from tflite_fp16 import (
    BatchResult,
    ConvertedTensor,
    KeptTensor,
    Options,
    Plan,
    Report,
    VerifyReport,
    inspect_bytes,
    plan_bytes,
    plan_file,
    rewrite,
    rewrite_bytes,
    rewrite_many,
    verify,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def convert(out: Path) -> Report:
    options = Options(keep=["*/attention/*"], skip_ops=["RESIZE_BILINEAR"], lossy="convert", layout="auto")
    report: Report = rewrite(EXAMPLES / "small_cnn.tflite", out, options)
    again: Report = rewrite(EXAMPLES / "small_cnn.tflite", out, min_elements=16, metric="top1", tolerance=0.0)
    converted: tuple[ConvertedTensor, ...] = report.converted
    kept: tuple[KeptTensor, ...] = again.kept
    names = [t.name for t in converted] + [k.name for k in kept]
    assert all(isinstance(name, str) for name in names)
    return report


def check(out: Path) -> bool:
    result: VerifyReport = verify(EXAMPLES / "small_cnn.tflite", out, inputs=EXAMPLES / "small_cnn_inputs.npz")
    return result.passed


def in_memory() -> int:
    data = (EXAMPLES / "small_cnn.tflite").read_bytes()
    converted, report = rewrite_bytes(data, keep_tensors=[(0, 3)])
    plan: Plan = plan_bytes(data)
    also: Plan = plan_file(EXAMPLES / "small_cnn.tflite", lossy="keep")
    info = inspect_bytes(converted)
    return len(plan.tensors) + len(also.tensors) + int(info["size"]) + report.size_before


def many(out: Path) -> list[BatchResult]:
    return rewrite_many([EXAMPLES], out, jobs=2, to="float16", raise_on_error=False, lossy="keep")


def searched(out: Path) -> int:
    report = rewrite(EXAMPLES / "filterbank.tflite", out, auto=True, tolerance=1e-3)
    if report.search is None:
        return 0
    kept: frozenset[tuple[int, int]] = report.search.keep_tensors
    return report.search.runs + len(kept) + report.kept_by_reason.get("tolerance", 0) + len(report.lines(verbose=True))
