"""Lossy constants (beyond +-65504, or a large relative cast error) are kept float32 by default;
--lossy convert is TensorFlow's behaviour; --lossy error refuses. Checked by running the models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import oracle
import pytest
import tflite_builder as tb

from tflite_fp16 import LossyModelError, plan_file, rewrite, verify

PROBES = ("zeros", "large", "normal")


@pytest.fixture
def frontend(tmp_path: Path) -> Path:
    path = tmp_path / "frontend.tflite"
    path.write_bytes(tb.build(tb.frontend_model()))
    return path


def by_sample(report) -> dict:  # type: ignore[no-untyped-def]
    return {c.sample: c for c in report.comparisons}


def test_default_keeps_the_clamp_and_the_epsilon_and_computes_what_float32_computes(
    frontend: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.tflite"
    report = rewrite(frontend, out)
    kept = {k.name: k for k in report.kept}
    assert set(kept) == {"frontend/clamp_max", "frontend/log_epsilon"}
    assert all(k.reason == "lossy" for k in kept.values())
    assert "+inf" in kept["frontend/clamp_max"].detail and "65504" in kept["frontend/clamp_max"].detail
    assert kept["frontend/log_epsilon"].detail == "1 of 1 values (1e-10) would become 0"
    assert [c.name for c in report.converted] == ["frontend/gain", "frontend/bias"]
    oracle.check_rewrite(frontend.read_bytes(), out.read_bytes())
    comparisons = by_sample(verify(frontend, out))
    for probe in PROBES:
        assert comparisons[probe].rel_l2_error <= 1e-3, probe
        assert comparisons[probe].new_nonfinite == 0, probe


def test_tensorflow_behaviour_breaks_the_model_and_names_both_constants(frontend: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tflite"
    report = rewrite(frontend, out, lossy="convert")
    assert report.tensors_converted == 4 and not report.kept
    lossy = {c.name: c for c in report.converted if c.lossy}
    assert set(lossy) == {"frontend/clamp_max", "frontend/log_epsilon"}
    assert lossy["frontend/clamp_max"].saturated == 1 and lossy["frontend/clamp_max"].infinity
    assert lossy["frontend/log_epsilon"].flushed == 1 and lossy["frontend/log_epsilon"].rel_l2_error == 1.0
    assert sum("frontend/clamp_max" in w or "frontend/log_epsilon" in w for w in report.warnings) == 2
    oracle.check_rewrite(frontend.read_bytes(), out.read_bytes(), lossy="convert")
    comparisons = by_sample(verify(frontend, out))
    assert comparisons["zeros"].new_nonfinite > 0  # log(max(0, 0)) = -inf on silence
    assert comparisons["large"].new_nonfinite > 0 or comparisons["large"].rel_l2_error > 1e-3


def test_clamp_alone_breaks_large_signals(tmp_path: Path) -> None:
    """With a harmless epsilon, the +inf clamp saturated to 65504 pins large inputs."""
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(tb.frontend_model(epsilon=1.0)))
    rewrite(source, out, lossy="convert")
    large = np.full((1, 8), 1000.0, np.float32)  # x * 256 = 256000 > 65504
    report = verify(source, out, inputs={"audio": large})
    assert report.worst_rel_l2_error > 0.05
    rewrite(source, out)  # default
    assert verify(source, out, inputs={"audio": large}).worst_rel_l2_error < 1e-3


def test_error_policy_refuses_and_names_each_lossy_tensor(frontend: Path, tmp_path: Path) -> None:
    with pytest.raises(LossyModelError, match="frontend/clamp_max") as caught:
        rewrite(frontend, tmp_path / "out.tflite", lossy="error")
    assert "frontend/log_epsilon" in str(caught.value) and "2 float32 constants" in str(caught.value)
    assert not (tmp_path / "out.tflite").exists()
    result = subprocess.run(
        [sys.executable, "-m", "tflite_fp16", "--lossy", "error", str(frontend), str(tmp_path / "out.tflite")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "frontend/clamp_max" in result.stderr and not (tmp_path / "out.tflite").exists()


def model_with_constant(values: np.ndarray) -> tb.Model:
    n = values.size
    return tb.Model(
        operator_codes=[tb.OperatorCode(tb.ADD)],
        subgraphs=[
            tb.Subgraph(
                [tb.Tensor([n], name="x"), tb.Tensor([n], name="c", buffer=1), tb.Tensor([n], name="y")],
                [tb.Operator(0, [0, 1], [2])],
                inputs=[0],
                outputs=[2],
            )
        ],
        buffers=[None, values.astype("<f4").tobytes()],
    )


@pytest.mark.parametrize(
    "values, lossy",
    [
        (np.random.default_rng(0).standard_normal(1000) * 0.05, False),  # ordinary weights: rel error ~2e-4
        (np.full(16, 3e-6), True),  # float16 subnormal range: rel error ~1e-2
        (np.array([1.0, 2.0, np.nan]), False),  # NaN stays NaN and is not lossy
        (np.array([65504.0, -65504.0]), False),  # the largest float16 exactly
        (np.array([65505.0]), True),  # beyond: saturates
        (np.array([-np.inf, 1.0]), True),
        (np.concatenate([np.full(1000, 0.5), [1e-9]]), False),  # one flushed value, negligible error
    ],
)
def test_what_is_lossy(tmp_path: Path, values: np.ndarray, lossy: bool) -> None:
    path = tmp_path / "in.tflite"
    path.write_bytes(tb.build(model_with_constant(values)))
    plan = plan_file(path)
    assert [k.reason for k in plan.kept] == (["lossy"] if lossy else [])
    assert len(plan.tensors) == (0 if lossy else 1)


def test_max_cast_error_sets_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "in.tflite"
    path.write_bytes(tb.build(model_with_constant(np.full(16, 3e-6))))
    (kept,) = plan_file(path).kept
    assert "relative L2 cast error" in kept.detail and "below float16's normal range" in kept.detail
    assert len(plan_file(path, max_cast_error=0.05).tensors) == 1
    ordinary = tmp_path / "ordinary.tflite"
    ordinary.write_bytes(tb.build(model_with_constant(np.random.default_rng(1).standard_normal(4096))))
    assert len(plan_file(ordinary).tensors) == 1
    assert plan_file(ordinary, max_cast_error=1e-5).kept[0].reason == "lossy"  # stricter than float16's rounding


def test_cli_default_names_kept_lossy_tensors_and_convert_warns(frontend: Path, tmp_path: Path) -> None:
    run = lambda *a: subprocess.run([sys.executable, "-m", "tflite_fp16", *a], capture_output=True, text=True)  # noqa: E731
    result = run(str(frontend), str(tmp_path / "out.tflite"))
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("2 tensors converted to float16, 2 kept float32 (2 lossy)")
    assert any("'frontend/clamp_max' (lossy)" in line for line in lines[1:])
    assert any("'frontend/log_epsilon' (lossy)" in line for line in lines[1:])
    result = run("--lossy", "convert", str(frontend), str(tmp_path / "out.tflite"))
    assert result.returncode == 0
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2 and all(w.startswith("tflite-fp16: warning: lossy constant converted") for w in warnings)
    assert "1 value beyond +-65504 saturated; 1 tiny value became 0" in result.stdout
    result = run("--max-cast-error", "-1", str(frontend), str(tmp_path / "out.tflite"))
    assert result.returncode == 2 and "--max-cast-error must be" in result.stderr  # the flag's name


def test_default_output_lists_a_handful_then_counts(tmp_path: Path) -> None:
    n = 8
    tensors = [tb.Tensor([1], name="x")]
    operators = []
    buffers = [None]
    for i in range(n):
        buffers.append(tb.float_bytes([1e-12 * (i + 1)]))
        tensors += [tb.Tensor([1], name=f"eps{i}", buffer=i + 1), tb.Tensor([1], name=f"t{i}")]
        operators.append(tb.Operator(0, [0 if i == 0 else 2 * i, 2 * i + 1], [2 * i + 2]))
    model = tb.Model([tb.OperatorCode(tb.ADD)], [tb.Subgraph(tensors, operators, inputs=[0], outputs=[2 * n])], buffers)
    path = tmp_path / "in.tflite"
    path.write_bytes(tb.build(model))
    result = subprocess.run(
        [sys.executable, "-m", "tflite_fp16", str(path), str(tmp_path / "o.tflite")], capture_output=True, text=True
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("nothing to convert: 8 float32 constants kept (8 lossy)")
    assert len(lines) == 1 + 5 + 1 and lines[-1] == "  and 3 more kept float32 as lossy (-v lists every tensor)"
    result = subprocess.run(
        [sys.executable, "-m", "tflite_fp16", "-v", "--json", "-", str(path), str(tmp_path / "o.tflite")],
        capture_output=True,
        text=True,
    )
    assert len(json.loads(result.stdout)["kept"]) == 8 and result.stderr.count("(lossy)") == 8


@pytest.mark.parametrize("size", [7, 70000])  # a small buffer (batched) and a large one (chunked)
def test_nonfinite_constants_raise_no_numpy_warnings(tmp_path: Path, size: int) -> None:
    values = np.tile(
        np.array([0x7F800001, 0x7FC00000, 0xFF800000, 0x3F800000, 0x7F7FFFFF, 1, 0], np.uint32), size // 7 + 1
    )[:size]
    path = tmp_path / "in.tflite"
    path.write_bytes(tb.build(model_with_constant(values.view("<f4"))))
    for policy in ("keep", "convert"):
        result = subprocess.run(
            [
                sys.executable,
                "-W",
                "error",
                "-m",
                "tflite_fp16",
                "--lossy",
                policy,
                str(path),
                str(tmp_path / "out.tflite"),
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert all(
            line.startswith("tflite-fp16: warning: lossy constant converted") for line in result.stderr.splitlines()
        )
        assert ("RuntimeWarning" not in result.stderr) and ("Traceback" not in result.stderr)
