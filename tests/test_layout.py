"""Buffer data inside the flatbuffer (normal layout) or after it (offset layout, models over 2 GB)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import oracle
import pytest
import runtime
import tflite
import tflite_builder as tb

from tflite_fp16 import InvalidModelError, RewriteError, rewrite
from tflite_fp16.format import writer

DATA = Path(__file__).resolve().parent / "data"
MODELS = ["small_cnn", "lstm_seq", "control_flow", "two_signatures"]


def is_offset_layout(path: Path) -> bool:
    """True when every buffer's data lies after the flatbuffer, False when every one is inside."""
    model = tflite.Model.GetRootAs(path.read_bytes(), 0)
    with_data = [model.Buffers(i) for i in range(model.BuffersLength()) if oracle.buffer_data(model, i)]
    external = [b.Offset() > 1 and b.DataIsNone() for b in with_data]
    assert with_data and (all(external) or not any(external)), "mixed layout"
    return all(external)


@pytest.mark.parametrize("name", MODELS)
def test_offset_layout_runs_like_the_normal_one(name: str, tmp_path: Path) -> None:
    source = DATA / f"{name}.fp32.tflite"
    normal, offset = tmp_path / "normal.tflite", tmp_path / "offset.tflite"
    assert rewrite(source, normal).layout == "normal"
    report = rewrite(source, offset, layout="offset")
    assert report.layout == "offset" and "offset layout" in report.summary()
    assert is_offset_layout(offset) and not is_offset_layout(normal)
    oracle.check_rewrite(source.read_bytes(), offset.read_bytes())  # includes 16-byte alignment of every buffer
    for resolver in runtime.RESOLVERS:
        expected, actual = runtime.run(normal, resolver), runtime.run(offset, resolver)
        for key in expected:
            np.testing.assert_array_equal(actual[key], expected[key])


@pytest.mark.parametrize("name", MODELS)
def test_offset_layout_input_is_written_normal_when_it_fits(name: str, tmp_path: Path) -> None:
    from tflite_fp16.format.reader import read_model

    offset_fp32, back, normal = tmp_path / "offset.tflite", tmp_path / "back.tflite", tmp_path / "normal.tflite"
    # The float32 model, laid out with its data after the flatbuffer.
    writer.write_model(read_model(DATA / f"{name}.fp32.tflite"), offset_fp32, layout="offset")
    assert is_offset_layout(offset_fp32)
    report = rewrite(offset_fp32, back)
    assert report.layout == "normal" and not is_offset_layout(back)
    oracle.check_rewrite(offset_fp32.read_bytes(), back.read_bytes())
    rewrite(DATA / f"{name}.fp32.tflite", normal)
    for key, value in runtime.run(normal).items():
        np.testing.assert_array_equal(runtime.run(back)[key], value)


def test_nothing_to_convert_copies_the_input_whatever_the_layout(tmp_path: Path) -> None:
    """TensorFlow's float16 file has no float32 constant: the output is its bytes, even when a layout is asked for."""
    source, out = DATA / "small_cnn.tf_fp16.tflite", tmp_path / "out.tflite"
    report = rewrite(source, out, layout="offset")
    assert report.unchanged and report.layout is None
    assert out.read_bytes() == source.read_bytes()


def test_float32_offset_input_converts(tmp_path: Path) -> None:
    """A float32 model in the offset layout (as TensorFlow writes models over 2 GB) converts like any other."""
    source = DATA / "tiny_mlp.fp32.tflite"
    offset_fp32 = tmp_path / "offset.tflite"
    # Re-lay the float32 model out in the offset layout without converting anything.
    from tflite_fp16.format.reader import read_model

    writer.write_model(read_model(source), offset_fp32, layout="offset")
    assert is_offset_layout(offset_fp32)
    out = tmp_path / "out.tflite"
    report = rewrite(offset_fp32, out)
    assert report.tensors_converted == 6 and report.layout == "normal"
    oracle.check_rewrite(offset_fp32.read_bytes(), out.read_bytes())
    assert runtime.max_abs_error(runtime.run(source), runtime.run(out)) < 1e-3


def test_offset_layout_is_idempotent_and_keeps_trailing_bytes(tmp_path: Path) -> None:
    source = tmp_path / "in.tflite"
    source.write_bytes((DATA / "embedding.fp32.tflite").read_bytes())
    with zipfile.ZipFile(source, "a") as archive:
        archive.writestr("labels.txt", "a\nb\n")
    once, twice = tmp_path / "once.tflite", tmp_path / "twice.tflite"
    rewrite(source, once, layout="offset")
    rewrite(once, twice, layout="offset")
    assert once.read_bytes() == twice.read_bytes()
    with zipfile.ZipFile(once) as archive:
        assert archive.read("labels.txt") == b"a\nb\n"


def test_auto_switches_to_offset_when_the_flatbuffer_would_be_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "FLATBUFFER_LIMIT", 9000)  # stands in for 2 GiB
    source = DATA / "small_cnn.fp32.tflite"  # 15 KB as float16 (6 KB without its data): over the stand-in limit
    out = tmp_path / "out.tflite"
    assert rewrite(source, out).layout == "offset"
    assert is_offset_layout(out)
    small = tmp_path / "small.tflite"
    small.write_bytes(tb.build(tb.add_model()))
    assert rewrite(small, tmp_path / "small_out.tflite").layout == "normal"
    with pytest.raises(RewriteError, match="offset layout"):
        rewrite(source, tmp_path / "forced.tflite", layout="normal")
    assert not (tmp_path / "forced.tflite").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tflite-fp16")]
    # A flatbuffer part over the limit, even without its data, is refused before anything is written.
    monkeypatch.setattr(writer, "FLATBUFFER_LIMIT", 3000)
    with pytest.raises(RewriteError, match="without its buffer data"):
        rewrite(source, tmp_path / "head.tflite")
    assert sorted(os.listdir(tmp_path)) == ["out.tflite", "small.tflite", "small_out.tflite"]


def test_unknown_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout"):
        rewrite(DATA / "tiny_mlp.fp32.tflite", tmp_path / "out.tflite", layout="sideways")
    assert not list(tmp_path.iterdir())


def test_cli_layout_option(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "out.tflite"
    result = subprocess.run(
        [sys.executable, "-m", "tflite_fp16", "--layout", "offset", str(DATA / "tiny_mlp.fp32.tflite"), str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "offset layout" in result.stdout and is_offset_layout(out)


def _with_external_custom_options(options: bytes) -> bytes:
    """A model whose custom operator keeps its options after the flatbuffer, as TensorFlow
    writes custom ops of models over 2 GB."""
    model = tb.add_model()
    model.operator_codes[0] = tb.OperatorCode(tb.CUSTOM, custom_code="BigOp")
    op = model.subgraphs[0].operators[0]
    op.large_custom_options = (1 << 40, len(options))  # placeholder of the same encoded size
    head = tb.build(model)
    offset = len(head) + (-len(head) % 16)
    op.large_custom_options = (offset, len(options))
    head = tb.build(model)
    return head + bytes(offset - len(head)) + options


def test_custom_options_after_the_flatbuffer_come_inside(tmp_path: Path) -> None:
    options = bytes(range(256)) * 3
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(_with_external_custom_options(options))
    assert (
        rewrite(source, out, custom_op_inputs=True).tensors_converted == 1
    )  # something converts: the file is rewritten
    op = tflite.Model.GetRootAs(out.read_bytes(), 0).Subgraphs(0).Operators(1)  # after the new DEQUANTIZE
    assert op.CustomOptionsAsNumpy().tobytes() == options
    assert op.LargeCustomOptionsOffset() == 0 and op.LargeCustomOptionsSize() == 0
    assert not out.read_bytes().endswith(options), "the options must not also be carried as trailing bytes"


def test_custom_options_offset_beyond_the_file(tmp_path: Path) -> None:
    content = _with_external_custom_options(b"x" * 64)[:-10]
    source = tmp_path / "in.tflite"
    source.write_bytes(content)
    with pytest.raises(InvalidModelError, match="beyond the end of the file"):
        rewrite(source, tmp_path / "out.tflite")
    assert not (tmp_path / "out.tflite").exists()
