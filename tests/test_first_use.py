"""First use: pipes, typos, wrong files, next steps, names that tell tensors apart, a typed API."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tflite_builder as tb

from tflite_fp16 import (
    ConvertedTensor,
    InvalidModelError,
    KeptTensor,
    LossyModelError,
    MissingDependencyError,
    RewriteError,
    Tflite16Warning,
    inspect_bytes,
    plan_bytes,
    plan_file,
    rewrite,
    rewrite_many,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CNN = ROOT / "examples" / "small_cnn.tflite"


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True, **kwargs)


def run_bytes(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], input=stdin, capture_output=True, cwd=cwd)


# ---------------------------------------------------------------- pipes


def test_dash_is_standard_output_and_input(tmp_path: Path) -> None:
    expected = tmp_path / "file.tflite"
    assert run(str(CNN), str(expected)).returncode == 0
    to_stdout = run_bytes(str(CNN), "-", cwd=tmp_path)
    assert to_stdout.returncode == 0 and to_stdout.stdout == expected.read_bytes()
    assert to_stdout.stderr.decode().startswith("10 tensors converted to float16")  # the summary moves to stderr
    assert not (tmp_path / "-").exists()
    from_stdin = run_bytes("-", str(tmp_path / "piped.tflite"), stdin=CNN.read_bytes())
    assert from_stdin.returncode == 0 and (tmp_path / "piped.tflite").read_bytes() == expected.read_bytes()
    both = run_bytes("-", "-", stdin=CNN.read_bytes())
    assert both.returncode == 0 and both.stdout == expected.read_bytes()
    dry = run_bytes("--dry-run", "-", stdin=CNN.read_bytes())
    assert dry.returncode == 0 and b"would be converted" in dry.stdout
    bad = run_bytes("-", "-", stdin=b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert bad.returncode == 2 and bad.stdout == b""
    assert bad.stderr.decode().strip() == "tflite-fp16: error: standard input is a PNG image, not a TFLite model"


def test_dash_output_and_json_to_stdout_exclude_each_other() -> None:
    result = run(str(CNN), "-", "--json", "-")
    assert result.returncode == 2 and "both want standard output" in result.stderr


# ---------------------------------------------------------------- typos


def test_no_prefix_abbreviations_and_the_closest_flag_suggested(tmp_path: Path) -> None:
    for typed, meant in (("--verif", "--verify"), ("--verfy", "--verify"), ("--tolerence", "--tolerance")):
        result = run(typed, str(CNN), str(tmp_path / "o.tflite"))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert f"unknown argument '{typed}' (did you mean {meant}?)" in result.stderr
        assert not (tmp_path / "o.tflite").exists()


def test_operator_names_and_flag_names_in_messages(tmp_path: Path) -> None:
    result = run("--skip-op", "CONV2D", str(CNN), str(tmp_path / "o.tflite"))
    assert result.returncode == 2 and "did you mean CONV_2D?" in result.stderr and "--skip-op" in result.stderr
    result = run("--min-elements", "-1", str(CNN), str(tmp_path / "o.tflite"))
    assert result.returncode == 2 and "--min-elements must be" in result.stderr and "min_elements" not in result.stderr


# ---------------------------------------------------------------- wrong files


def _zip(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, content, said",
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(100), "is a PNG image, not a TFLite model"),
        ("photo.jpg", b"\xff\xd8\xff\xe0" + bytes(100), "is a JPEG image, not a TFLite model"),
        ("model.onnx", b"\x08\x07\x12\x07pytorch" + bytes(100), "is an ONNX model, not a TFLite model: convert it"),
        ("paper.pdf", b"%PDF-1.7\n" + bytes(100), "is a PDF document, not a TFLite model"),
        ("notes.tflite", b"this is not a model, just some words\n", "is a text file, not a TFLite model"),
        (
            "face.task",
            _zip(["face_detector.tflite", "face_landmarks_detector.tflite"]),
            "is a zip archive holding TFLite models ('face_detector.tflite', 'face_landmarks_detector.tflite'), as "
            "MediaPipe's .task bundles are: unzip it",
        ),
        ("archive.zip", _zip(["readme.txt"]), "is a zip archive, not a TFLite model"),
        ("inputs.npz", _zip(["audio.npy", "labels.npy"]), "is a NumPy archive (.npz), not a TFLite model"),
        ("weights.npy", b"\x93NUMPY\x01\x00" + bytes(100), "is a NumPy array (.npy), not a TFLite model"),
        ("broken.zip", b"PK\x03\x04" + bytes(100), "is a zip archive (a damaged one), not a TFLite model"),
        ("gemma.litertlm", b"LITERTLM" + bytes(100), "is a LiteRT-LM bundle (.litertlm), not a TFLite model"),
    ],
)
def test_a_wrong_file_is_named_for_what_it_is(tmp_path: Path, name: str, content: bytes, said: str) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    result = run(str(source), str(tmp_path / "o.tflite"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tflite-fp16: error: ")
    assert repr(str(source)) in lines[0] and said in lines[0]
    with pytest.raises(InvalidModelError, match=re.escape(said.split(" (")[0])):
        rewrite(source, None)


# ---------------------------------------------------------------- inspect


def test_inspect_takes_files_and_folders_and_writes_json(tmp_path: Path) -> None:
    result = run("inspect", str(ROOT / "examples"), str(DATA / "tiny_mlp.fp32.tflite"))
    assert result.returncode == 0 and result.stdout.count("\nfile ") + result.stdout.startswith("file ") == 4
    report = tmp_path / "inspect.json"
    result = run("inspect", "--json", str(report), str(ROOT / "examples"))
    assert result.returncode == 0 and result.stdout.count("file ") == 3  # like the converter: text still printed
    to_stdout = run("inspect", "--json", "-", str(CNN))
    assert json.loads(to_stdout.stdout)["file"] == str(CNN)  # one file: one object, as the converter does
    data = json.loads(report.read_text())
    assert [Path(d["file"]).name for d in data] == ["audio_frontend.tflite", "filterbank.tflite", "small_cnn.tflite"]
    assert "inspect" in run("--help").stdout.split("options:")[0]  # in the usage lines
    assert run("inspect", "--json", str(CNN)).returncode == 2  # --json takes FILE or -


def test_inspect_shows_short_text_metadata(tmp_path: Path) -> None:
    model = tb.add_model()
    model.buffers.append(b"true")
    model.metadata = [*model.metadata, ("keep_stablehlo_constant", len(model.buffers) - 1)]
    source = tmp_path / "flags.tflite"
    source.write_bytes(tb.build(model))
    result = run("inspect", str(source))
    assert "'keep_stablehlo_constant' (4 bytes): 'true'" in result.stdout


def test_widen_verbose_lists_the_metadata_changes(tmp_path: Path) -> None:
    half = tmp_path / "half.tflite"
    rewrite(CNN, half)
    result = run(str(half), str(tmp_path / "back.tflite"), "--to", "float32", "-v")
    assert result.returncode == 0
    assert "  metadata reduced_precision_support removed" in result.stdout
    assert "  metadata CONVERSION_METADATA updated" in result.stdout


# ---------------------------------------------------------------- next steps


def _many_small_constants_and_one_large() -> tb.Model:
    """One 64 x 64 weight (saves 8 KB in float16) and 24 one-value constants (each costs a DEQUANTIZE)."""
    rng = np.random.default_rng(0)
    tensors = [tb.Tensor([1, 64], name="x"), tb.Tensor([64, 64], name="big", buffer=1), tb.Tensor([1, 64], name="h0")]
    buffers: list[bytes | None] = [None, rng.standard_normal((64, 64)).astype("<f4").tobytes()]
    operators = [tb.Operator(1, [0, 1, -1], [2])]
    for i in range(24):
        buffers.append(tb.float_bytes([0.5 + i]))
        tensors += [tb.Tensor([1], name=f"tiny{i}", buffer=len(buffers) - 1), tb.Tensor([1, 64], name=f"h{i + 1}")]
        operators.append(tb.Operator(0, [len(tensors) - 3 if i else 2, len(tensors) - 2], [len(tensors) - 1]))
    return tb.Model(
        operator_codes=[tb.OperatorCode(tb.ADD), tb.OperatorCode(tb.FULLY_CONNECTED)],
        subgraphs=[tb.Subgraph(tensors, operators, inputs=[0], outputs=[len(tensors) - 1])],
        buffers=buffers,
    )


def test_an_output_larger_than_the_input_suggests_min_elements(tmp_path: Path) -> None:
    source = tmp_path / "small_constants.tflite"
    source.write_bytes(tb.build(tb.frontend_model()))
    result = run(str(source), str(tmp_path / "o.tflite"))
    assert "  note: the output is larger than the input" in result.stdout
    mixed = tmp_path / "mixed.tflite"
    model = _many_small_constants_and_one_large()
    for i in range(24):
        model.buffers[2 + i] = tb.float_bytes([0.5 + i] * 64)  # 64 values each: still small, each pays a DEQUANTIZE
        model.subgraphs[0].tensors[3 + 2 * i].shape = [64]
    mixed.write_bytes(tb.build(model))
    report = rewrite(mixed, tmp_path / "m.tflite")
    advice = report.size_advice()
    if report.size_after > report.size_before:
        assert "--min-elements" in advice
        n = int(advice.split("--min-elements ")[1].split()[0])
        better = rewrite(mixed, tmp_path / "better.tflite", min_elements=n)
        assert better.size_after < report.size_after


def test_a_dry_run_gives_the_output_size_and_says_would_convert() -> None:
    result = run("--dry-run", "-v", str(CNN))
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == "10 tensors would be converted to float16 (dry run, nothing written); 20,520 -> 15,024 bytes (73.2%)"
    )
    assert sum(line.startswith("  would convert subgraph") for line in lines) == 10


# ---------------------------------------------------------------- names that tell tensors apart


def test_long_names_are_shortened_in_the_middle_with_their_index(tmp_path: Path) -> None:
    prefix = "torchvision.models.vision_transformer.VisionTransformer/" + "Sequential/" * 20
    model = tb.add_model()
    model.subgraphs[0].tensors[1].name = prefix + "encoder_layer_11/mlp/bias_A"
    source = tmp_path / "long.tflite"
    source.write_bytes(tb.build(model))
    result = run("--check", str(source))
    assert result.returncode == 4
    assert "subgraph 0 tensor 1 'torchvision.models" in result.stdout and "bias_A'" in result.stdout
    kept = run("--keep", "*bias_A", "-v", "--dry-run", str(source))
    line = next(line for line in kept.stdout.splitlines() if "kept float32" in line)
    assert "subgraph 0 tensor 1" in line and line.split("(keep_pattern)")[0].rstrip().endswith("bias_A'")


# ---------------------------------------------------------------- the Python API


def test_a_dry_run_cannot_verify() -> None:
    with pytest.raises(ValueError, match="verify needs an output"):
        rewrite(CNN, None, verify=True)


def test_warnings_go_through_pythons_warnings_too(tmp_path: Path) -> None:
    with pytest.warns(Tflite16Warning, match="keep pattern 'nothing\\*' matches no float32 constant"):
        report = rewrite(CNN, tmp_path / "o.tflite", keep=["nothing*"])
    assert report.warnings == ("keep pattern 'nothing*' matches no float32 constant",)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Tflite16Warning)
        with pytest.raises(Tflite16Warning):
            rewrite(CNN, tmp_path / "o.tflite", keep=["nothing*"])


def test_exception_classes_and_bytes_functions() -> None:
    assert issubclass(MissingDependencyError, ImportError) and issubclass(LossyModelError, ValueError)
    data = CNN.read_bytes()
    assert plan_bytes(data).tensors == plan_file(CNN).tensors
    info = inspect_bytes(data)
    assert info["file"] == "<bytes>" and info["rewrite"]["tensors_converted"] == 10


def test_kept_and_converted_tensors_have_one_shape(tmp_path: Path) -> None:
    report = rewrite(CNN, None, min_elements=100)
    shared = ("subgraph", "tensor", "name", "shape")
    assert ConvertedTensor._fields[:4] == KeptTensor._fields[:4] == shared
    kept, converted = report.kept[0], report.converted[0]
    assert isinstance(kept.name, str) and isinstance(converted.name, str) and kept.ref.name == kept.name


def test_batch_results_keep_the_exception_and_can_raise_it(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.tflite").write_bytes(CNN.read_bytes())
    (folder / "bad.tflite").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    results = rewrite_many([folder], tmp_path / "out", jobs=1)
    failed = next(r for r in results if not r.ok)
    assert isinstance(failed.exception, InvalidModelError)
    with pytest.raises(InvalidModelError, match="is a PNG image"):
        rewrite_many([folder], tmp_path / "out2", jobs=2, raise_on_error=True)


def test_mypy_checks_the_typed_usage_and_catches_a_misspelled_option(tmp_path: Path) -> None:
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(ROOT / "tests" / "typed_usage.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert typed.returncode == 0, typed.stdout
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from tflite_fp16 import Options, rewrite\n"
        "rewrite('a.tflite', 'b.tflite', lossi='convert')\n"
        "Options(lossy='sometimes')\n"
    )
    caught = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(wrong)], capture_output=True, text=True, cwd=ROOT
    )
    assert caught.returncode == 1
    assert 'Unexpected keyword argument "lossi"' in caught.stdout and "sometimes" in caught.stdout


def test_rewrite_error_is_the_base_of_every_error() -> None:
    assert issubclass(InvalidModelError, RewriteError) and issubclass(LossyModelError, RewriteError)
