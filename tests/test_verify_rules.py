"""Verification a user can trust: the probes judge breakage, the user's inputs the tolerance;
any input shape; calibration data checked before use; where the error enters; LiteRT in a
child process that can crash without taking the caller down."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tflite_builder as tb

from tflite_fp16 import InvalidInputsError, UnsupportedModelError, VerificationError, rewrite, verify
from tflite_fp16.options import BREAKAGE_BOUND, DEFAULT_TOLERANCE
from tflite_fp16.verification import MAX_SAMPLES, Verifier

DATA = Path(__file__).resolve().parent / "data"


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True, **kwargs)


def model_file(tmp_path: Path, name: str, model: tb.Model) -> Path:
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(tb.build(model))
    return path


def converted(tmp_path: Path, source: Path, **options: Any) -> Path:
    out = tmp_path / f"{source.stem}.fp16.tflite"
    rewrite(source, out, **options)
    return out


# ---------------------------------------------------------------- two kinds of evidence


def test_a_harmless_sigmoid_map_passes_on_the_probes_and_is_held_to_the_tolerance_on_inputs(tmp_path: Path) -> None:
    source = model_file(tmp_path, "map", tb.sigmoid_map_model())
    out = converted(tmp_path, source)
    report = verify(source, out)
    assert report.passed, report.summary()
    assert report.worst_rel_l2_error > DEFAULT_TOLERANCE  # the old rule (tolerance on probes) refused it
    assert all(c.kind == "probe" and c.rule == "breakage" and c.limit == BREAKAGE_BOUND for c in report.comparisons)
    assert "3 probes for breakage" in report.summary()
    # The same numbers as the user's own inputs: the tolerance applies, and they fail.
    inputs = np.random.default_rng(0).standard_normal((1, 1, 16)).astype(np.float32)
    on_inputs = verify(source, out, inputs={"image": inputs})
    assert not on_inputs.passed and on_inputs.worst is not None
    assert on_inputs.worst.rule == "tolerance" and on_inputs.worst.kind == "inputs"
    result = run("--verify", str(source), str(tmp_path / "cli.tflite"))
    assert result.returncode == 0 and (tmp_path / "cli.tflite").exists(), result.stderr


def test_breakage_stays_caught_on_the_probes(tmp_path: Path) -> None:
    frontend = model_file(tmp_path, "frontend", tb.frontend_model())
    with pytest.raises(VerificationError) as caught:
        rewrite(frontend, tmp_path / "out.tflite", lossy="convert", verify=True)
    report = caught.value.report
    assert sum(c.new_nonfinite for c in report.comparisons) > 0 and not (tmp_path / "out.tflite").exists()
    broken = verify(DATA / "fp16_range.fp32.tflite", DATA / "fp16_range.tf_fp16.tflite")
    assert not broken.passed
    assert all(c.rel_l2_error > BREAKAGE_BOUND for c in broken.failures)  # 0.23 to 0.88: beyond the bound


def test_a_tolerance_above_the_bound_loosens_the_probes(tmp_path: Path) -> None:
    report = verify(DATA / "fp16_range.fp32.tflite", DATA / "fp16_range.tf_fp16.tflite", tolerance=10.0)
    assert report.passed and all(c.limit == 10.0 for c in report.comparisons)


def test_metric_top1_against_an_independent_count(tmp_path: Path) -> None:
    source = model_file(tmp_path, "dense", tb.sensitive_dense_model())
    out = converted(tmp_path, source)
    rng = np.random.default_rng(1)
    samples = np.concatenate([np.ones((1, 1, 16)), rng.standard_normal((3, 1, 16))]).astype(np.float32)
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def record(reference: Any, candidate: Any) -> bool:
        seen.append((np.asarray(reference["y"]), np.asarray(candidate["y"])))
        return True

    verify(source, out, inputs={"x": samples}, check=record)
    expected = [float(np.argmax(a) != np.argmax(b)) for a, b in seen]
    report = verify(source, out, inputs={"x": samples}, metric="top1", tolerance=0.0)
    assert [c.top1_mismatch for c in report.comparisons] == expected
    assert [c.error for c in report.comparisons] == expected
    assert report.passed == (max(expected) == 0.0)
    assert all(c.metric == "top1" for c in report.comparisons)
    # A classifier keeps its arg-max in float16: top1 passes with no tolerance at all.
    cnn = DATA / "small_cnn.fp32.tflite"
    images = np.random.default_rng(2).standard_normal((4, 1, 32, 32, 3)).astype(np.float32)
    assert verify(
        cnn, DATA / "small_cnn.tf_fp16.tflite", inputs={"keras_tensor": images}, metric="top1", tolerance=0
    ).passed


def test_a_check_function_decides_on_the_inputs(tmp_path: Path) -> None:
    source = DATA / "tiny_mlp.fp32.tflite"
    out = converted(tmp_path, source)
    calls: list[tuple[list[str], list[str]]] = []

    def never(reference: Any, candidate: Any) -> bool:
        calls.append((sorted(reference), sorted(candidate)))
        return False

    inputs = {"keras_tensor": np.zeros((2, 1, 16), np.float32)}
    report = verify(source, out, inputs=inputs, check=never)
    assert not report.passed and len(calls) == 2 and calls[0][0] == calls[0][1] == ["output_0"]
    assert {c.rule for c in report.comparisons} == {"check"}
    assert verify(source, out, inputs=inputs, check=lambda a, b: True).passed
    with pytest.raises(VerificationError):
        rewrite(source, tmp_path / "checked.tflite", verify=True, inputs=inputs, check=never)
    assert not (tmp_path / "checked.tflite").exists()


# ---------------------------------------------------------------- any input shape


def test_dynamic_image_and_audio_inputs_find_a_size_and_say_it(tmp_path: Path) -> None:
    image = model_file(tmp_path, "image", tb.conv_image_model())
    audio = model_file(tmp_path, "audio", tb.audio_window_model())
    for source, shown in ((image, "'image' [1, 4, 4, 3]"), (audio, "'audio' [1, 8]")):
        report = verify(source, converted(tmp_path, source))
        assert report.passed and any(shown in note and "--shape" in note for note in report.notes), report.notes
        result = run("--verify", str(source), str(tmp_path / "cli.tflite"))
        assert result.returncode == 0, result.stderr


def test_shape_sets_the_probes_and_arrays_set_their_own(tmp_path: Path) -> None:
    image = model_file(tmp_path, "image", tb.conv_image_model())
    out = converted(tmp_path, image)
    report = verify(image, out, shapes={"image": (1, 32, 32, 3)})
    assert report.passed and not report.notes
    assert {c.elements for c in report.comparisons} == {30 * 30 * 4}
    result = run("--verify", "--shape", "image=1,20,24,3", str(image), str(tmp_path / "cli.tflite"))
    assert result.returncode == 0, result.stderr
    arrays = np.random.default_rng(0).standard_normal((2, 1, 10, 12, 3)).astype(np.float32)
    given = verify(image, out, inputs={"image": arrays})
    assert given.passed and {c.elements for c in given.comparisons} == {8 * 10 * 4}
    with pytest.raises(InvalidInputsError, match="--shape 'picture'"):
        verify(image, out, shapes={"picture": (1, 8, 8, 3)})
    with pytest.raises(InvalidInputsError, match="does not fit"):
        verify(image, out, shapes={"image": (1, 8, 8, 4)})
    with pytest.raises(UnsupportedModelError, match="nothing can be compared"):
        verify(image, out, shapes={"image": (1, 2, 2, 3)})  # smaller than the kernel: empty outputs


def test_a_model_no_probe_size_runs_names_shape(tmp_path: Path) -> None:
    audio = model_file(tmp_path, "long", tb.audio_window_model(window=1 << 17))  # longer than any size tried
    with pytest.raises(UnsupportedModelError, match=r"any size .* --shape NAME=D0,D1"):
        verify(audio, audio)
    result = run("--verify", str(audio), str(tmp_path / "out.tflite"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "--shape" in result.stderr
    assert not (tmp_path / "out.tflite").exists()


# ---------------------------------------------------------------- calibration data checked before use


def _npz_with_header(path: Path, name: str, shape: tuple[int, ...]) -> None:
    """An .npz whose one member declares ``shape`` of float32 but holds almost nothing."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.npy", header.getvalue() + bytes(8))


def _peak_kb(code: str) -> tuple[int, float, str]:
    """Run ``code`` in a fresh interpreter: its peak memory (KB), seconds, and stderr."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    usage = int(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else -1
    return usage, seconds, result.stderr


def test_huge_declared_arrays_and_bombs_are_refused_before_loading(tmp_path: Path) -> None:
    audio = model_file(tmp_path, "audio", tb.audio_window_model())
    declared = tmp_path / "declared.npz"
    _npz_with_header(declared, "audio", (1, 1 << 40))
    assert declared.stat().st_size < 400
    with pytest.raises(InvalidInputsError, match="dynamic dimension 1"):
        verify(audio, audio, inputs=declared)
    many = tmp_path / "many.npz"
    _npz_with_header(many, "audio", (1 << 30, 1, 8))
    with pytest.raises(InvalidInputsError, match=f"at most {MAX_SAMPLES:,}"):
        verify(audio, audio, inputs=many)
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, audio=np.zeros((1_000_000, 1, 8), np.float32))
    assert bomb.stat().st_size < 100_000
    code = (
        "import resource, sys\n"
        "from tflite_fp16 import verify, InvalidInputsError\n"
        f"try:\n    verify({str(audio)!r}, {str(audio)!r}, inputs={str(bomb)!r})\n"
        "except InvalidInputsError as e:\n    print(e, file=sys.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    peak, seconds, stderr = _peak_kb(code)
    assert f"at most {MAX_SAMPLES:,}" in stderr
    assert peak < 400_000 and seconds < 20  # the million samples (32 MB, 1.2 GB in LiteRT) are never loaded


@pytest.mark.parametrize("fill", [np.nan, np.inf, 1e38])
def test_inputs_that_leave_nothing_to_compare_are_refused(tmp_path: Path, fill: float) -> None:
    source = model_file(tmp_path, "frontend", tb.frontend_model())  # x * 256 overflows float32 at 1e38
    out = converted(tmp_path, source)
    calibration = tmp_path / "bad.npz"
    np.savez(calibration, audio=np.full((3, 1, 8), fill, np.float32))
    with pytest.raises(InvalidInputsError, match="nothing can be compared"):
        verify(source, out, inputs=calibration)
    result = run("--verify", "--inputs", str(calibration), str(source), str(tmp_path / "cli.tflite"))
    assert result.returncode == 2 and "nothing can be compared" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "cli.tflite").exists()


def test_a_sample_with_nothing_to_compare_is_named(tmp_path: Path) -> None:
    source = DATA / "tiny_mlp.fp32.tflite"
    out = converted(tmp_path, source)
    arrays = np.random.default_rng(0).standard_normal((2, 1, 16)).astype(np.float32)
    arrays[1] = np.nan
    report = verify(source, out, inputs={"keras_tensor": arrays})
    assert report.passed and any("inputs[1]" in note and "nothing to compare" in note for note in report.notes)
    assert [c.compared for c in report.comparisons] == [report.comparisons[0].elements, 0]
    assert any("16 non-finite values" in note for note in report.notes)


def test_empty_non_numeric_and_integer_arrays(tmp_path: Path) -> None:
    source = DATA / "tiny_mlp.fp32.tflite"
    out = converted(tmp_path, source)
    with pytest.raises(InvalidInputsError, match="empty"):
        verify(source, out, inputs={"keras_tensor": np.zeros((0, 1, 16), np.float32)})
    with pytest.raises(InvalidInputsError, match="give numbers"):
        verify(source, out, inputs={"keras_tensor": np.array([["a"] * 16])})
    report = verify(source, out, inputs={"keras_tensor": np.arange(16).reshape(1, 16)})
    assert report.passed and any("holds integers" in note for note in report.notes)


def test_npy_for_a_model_with_one_input(tmp_path: Path) -> None:
    source = DATA / "tiny_mlp.fp32.tflite"
    out = converted(tmp_path, source)
    array = tmp_path / "samples.npy"
    np.save(array, np.random.default_rng(0).standard_normal((4, 1, 16)).astype(np.float32))
    report = verify(source, out, inputs=array)
    assert report.passed and report.samples == ("inputs[0]", "inputs[1]", "inputs[2]", "inputs[3]")
    result = run("--verify", "--inputs", str(array), str(source), str(tmp_path / "cli.tflite"))
    assert result.returncode == 0, result.stderr
    two_inputs = DATA / "control_flow.fp32.tflite"
    with pytest.raises(InvalidInputsError, match="is one array"):
        verify(two_inputs, two_inputs, inputs=array)


# ---------------------------------------------------------------- where the error enters


def test_layers_point_at_the_constant_that_was_made_sensitive(tmp_path: Path) -> None:
    source = model_file(tmp_path, "dense", tb.sensitive_dense_model())
    out = converted(tmp_path, source)
    inputs = {"x": np.ones((1, 1, 16), np.float32)}
    report = verify(source, out, inputs=inputs, layers=True)
    assert not report.passed
    entry = report.entry
    assert entry is not None and entry.operator == "0 FULLY_CONNECTED" and entry.name == "dense/output"
    assert entry.constants == ("dense/weights", "dense/bias") and entry.input_error == 0.0
    assert [layer.name for layer in report.layers] == ["x", "dense/output", "y"]
    assert "--keep 'dense/weights'" in report.hint()
    npz = tmp_path / "ones.npz"
    np.savez(npz, **inputs)
    result = run(
        "--verify",
        "--layers",
        "--inputs",
        str(npz),
        "--json",
        str(tmp_path / "r.json"),
        str(source),
        str(tmp_path / "cli.tflite"),
    )
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tflite-fp16: next:") and "--keep 'dense/weights'" in last
    layers = json.loads((tmp_path / "r.json").read_text())["verify"]["layers"]
    assert [(entry["subgraph"], entry["tensor"], entry["operator"]) for entry in layers] == [
        (0, 0, "input"),
        (0, 3, "0 FULLY_CONNECTED"),
        (0, 5, "1 MUL"),
    ]
    assert {"name", "rel_l2_error", "max_abs_error", "new_nonfinite"} <= set(layers[1])
    # Without --layers, the failure points at --layers and --auto.
    plain = run("--verify", "--inputs", str(npz), str(source), str(tmp_path / "cli.tflite"))
    assert plain.returncode == 3 and "--layers" in plain.stderr.strip().splitlines()[-1]


def test_layers_of_a_file_converted_elsewhere_pair_by_name(tmp_path: Path) -> None:
    report = verify(DATA / "fp16_range.fp32.tflite", DATA / "fp16_range.tf_fp16.tflite", layers=True)
    assert report.layers and report.entry is not None and report.entry.constants
    assert all(layer.name for layer in report.layers)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # in the test extra: CI has it
    source = model_file(tmp_path, "dense", tb.sensitive_dense_model())
    picture = tmp_path / "layers.png"
    with pytest.raises(VerificationError):
        rewrite(
            source, tmp_path / "out.tflite", verify=True, inputs={"x": np.ones((1, 1, 16), np.float32)}, plot=picture
        )
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 5000
    passing = tmp_path / "passing.png"
    result = run("--verify", "--plot", str(passing), str(DATA / "small_cnn.fp32.tflite"), str(tmp_path / "cnn.tflite"))
    assert result.returncode == 0 and passing.read_bytes()[:4] == b"\x89PNG", result.stderr


def test_plot_without_matplotlib_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from tflite_fp16.cli import main\n"
        f"sys.exit(main(['--verify', '--plot', {str(tmp_path / 'p.png')!r}, {str(DATA / 'tiny_mlp.fp32.tflite')!r}, "
        f"{str(tmp_path / 'out.tflite')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tflite-fp16: error: --plot needs matplotlib, which is not installed: pip install 'tflite-fp16[plot]'"
    ]


# ---------------------------------------------------------------- LiteRT never takes the caller down


def test_a_model_that_crashes_litert_is_an_error_and_the_caller_survives(tmp_path: Path) -> None:
    source = model_file(tmp_path, "split", tb.split_by_zero_model())
    out = tmp_path / "out.tflite"
    try:
        rewrite(source, out, verify=True)
    except UnsupportedModelError as error:
        message = str(error)
    else:
        raise AssertionError("LiteRT ran a SPLIT into 0 parts")
    assert "SIGSEGV" in message or "SIGFPE" in message, message
    assert not out.exists()
    assert rewrite(source, out).tensors_converted == 1  # and this process goes on
    result = run("--verify", str(source), str(tmp_path / "cli.tflite"))
    assert result.returncode == 2 and "crashed" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_timeout_ends_the_child_and_names_the_time(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="within 1e-06 s"):
        verify(DATA / "tiny_mlp.fp32.tflite", DATA / "tiny_mlp.fp32.tflite", timeout=1e-6)


def test_the_child_ends_with_the_verifier_and_with_its_parent(tmp_path: Path) -> None:
    with Verifier(DATA / "tiny_mlp.fp32.tflite") as verifier:
        process = verifier.session.process
        assert process is not None and process.poll() is None
    assert process.poll() is not None
    code = (
        "import sys, time\n"
        "from tflite_fp16.verification import Verifier\n"
        f"v = Verifier({str(DATA / 'tiny_mlp.fp32.tflite')!r})\n"
        "print(v.session.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child), "LiteRT's process outlived its parent"


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_the_constant_to_keep_is_found_upstream_of_an_operator_that_reads_none(tmp_path: Path) -> None:
    frontend = model_file(tmp_path, "frontend", tb.frontend_model())
    out = converted(tmp_path, frontend, lossy="convert")  # the epsilon 1e-10 becomes 0
    report = verify(frontend, out, layers=True)
    assert not report.passed and report.culprits() == ("frontend/log_epsilon",)
    assert "--keep 'frontend/log_epsilon'" in report.hint()


def test_culprits_walk_back_past_operators_without_constants() -> None:
    from tflite_fp16.verification import LayerComparison, OutputComparison, VerifyReport

    def layer(
        tensor: int,
        operator: str,
        error: float,
        constants: tuple[str, ...],
        sources: tuple[int, ...],
        nonfinite: int = 0,
    ) -> LayerComparison:
        return LayerComparison(0, tensor, f"t{tensor}", operator, error, error, nonfinite, 0.0, constants, (), sources)

    failing = OutputComparison(
        "", "y", "zeros", "probe", 1, 1, 0, 0.0, 1.0, 0.0, 3, "breakage", "rel_l2", 0.0, 0.15, False
    )
    layers = (
        layer(0, "input", 0.0, (), ()),
        layer(1, "0 MUL", 0.0, ("gain",), (0,)),  # unchanged: not a culprit
        layer(2, "1 MAXIMUM", 1e-9, ("epsilon",), (1,)),  # changed a little
        layer(3, "2 RELU", 1e-9, (), (2,)),
        layer(4, "3 LOG", 0.0, (), (3,), nonfinite=3),  # the error shows here, reading no constant
    )
    report = VerifyReport((failing,), 0.01, ("zeros",), layers=layers, layers_sample="zeros")
    assert report.entry is layers[4] and report.culprits() == ("epsilon",)


def test_a_tolerance_without_inputs_says_what_judges_the_probes(tmp_path: Path) -> None:
    result = run("--verify", "--tolerance", "1e-3", str(DATA / "tiny_mlp.fp32.tflite"), str(tmp_path / "out.tflite"))
    assert result.returncode == 0
    assert result.stderr.strip().splitlines() == [
        "tflite-fp16: warning: --tolerance and --metric judge --inputs; without them the probes judge breakage only "
        "(relative L2 error above 0.15 or new non-finite values)"
    ]
