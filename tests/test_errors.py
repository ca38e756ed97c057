"""Bad input: our own exception with an actionable message, no output file, input untouched."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import tflite_builder as tb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tflite_fp16 import InvalidModelError, RewriteError, UnsupportedModelError, rewrite

DATA = Path(__file__).resolve().parent / "data"
TINY = (DATA / "tiny_mlp.fp32.tflite").read_bytes()


def expect_failure(tmp_path: Path, content: bytes, error: type, match: str) -> None:
    source = tmp_path / "in.tflite"
    source.write_bytes(content)
    with pytest.raises(error, match=match):
        rewrite(source, tmp_path / "out.tflite")
    assert sorted(os.listdir(tmp_path)) == ["in.tflite"], "output or temporary file left behind"
    assert source.read_bytes() == content


def test_empty_file(tmp_path: Path) -> None:
    expect_failure(tmp_path, b"", InvalidModelError, "empty")


def test_too_short(tmp_path: Path) -> None:
    expect_failure(tmp_path, b"\x10\x00\x00\x00TF", InvalidModelError, "too short")


def test_not_a_tflite_file(tmp_path: Path) -> None:
    expect_failure(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(100), InvalidModelError, "is a PNG image, not a TFLite model")
    expect_failure(tmp_path, b"hello, this is text and not a model\n" * 3, InvalidModelError, "not a TFLite model")


@pytest.mark.parametrize("keep", [12, 100, len(TINY) // 2, len(TINY) - 200])
def test_truncated(tmp_path: Path, keep: int) -> None:
    expect_failure(tmp_path, TINY[:keep], InvalidModelError, "outside the file")


def test_root_offset_outside_the_file(tmp_path: Path) -> None:
    expect_failure(tmp_path, struct.pack("<I", 10**6) + TINY[4:], InvalidModelError, "outside the file")


def test_vector_length_outside_the_file(tmp_path: Path) -> None:
    content = bytearray(TINY)
    # The length of the largest buffer's data vector (4096 bytes of weights).
    at = bytes(content).find(struct.pack("<I", 4096))
    content[at : at + 4] = struct.pack("<I", 0x7FFFFFF0)
    expect_failure(tmp_path, bytes(content), InvalidModelError, "outside the file")


def _model(**changes) -> tb.Model:  # type: ignore[no-untyped-def]
    model = tb.add_model()
    for key, value in changes.items():
        setattr(model, key, value)
    return model


def test_tensor_buffer_index_out_of_range(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].tensors[1].buffer = 99
    expect_failure(tmp_path, tb.build(model), InvalidModelError, "buffer 99")


def test_operator_input_out_of_range(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].operators[0].inputs = [0, 7]
    expect_failure(tmp_path, tb.build(model), InvalidModelError, "tensor 7")


def test_opcode_index_out_of_range(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].operators[0].opcode = 5
    expect_failure(tmp_path, tb.build(model), InvalidModelError, "operator code 5")


def test_signature_tensor_out_of_range(tmp_path: Path) -> None:
    model = tb.add_model()
    model.signatures = [tb.Signature("serving_default", 0, [("x", 0)], [("y", 42)])]
    expect_failure(tmp_path, tb.build(model), InvalidModelError, "tensor 42")


def test_float_data_size_does_not_match_shape(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].tensors[1].shape = [5]
    expect_failure(tmp_path, tb.build(model), InvalidModelError, "holds 16 bytes")


def test_unknown_tensor_field_is_refused_by_name(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].tensors[1].extra_slot = (11, 7)  # the first slot after Tensor.external_buffer (schema 3d)
    expect_failure(
        tmp_path,
        tb.build(model),
        UnsupportedModelError,
        r"Tensor \(Model.subgraphs.tensors\) has a field in vtable slot 11 .* newer schema",
    )


def test_unknown_model_field_is_refused_by_name(tmp_path: Path) -> None:
    expect_failure(tmp_path, tb.build(_model(model_extra_slot=(10, 1))), UnsupportedModelError, r"Model .*slot 10")


def test_unknown_field_with_default_value_is_not_present(tmp_path: Path) -> None:
    # A vtable may be longer than the schema's as long as the extra slots are empty.
    model = tb.add_model()
    model.subgraphs[0].tensors[1].extra_slot = (11, 0)  # 0 == default: the builder omits it
    source = tmp_path / "in.tflite"
    source.write_bytes(tb.build(model))
    assert rewrite(source, tmp_path / "out.tflite").tensors_converted == 1


def test_unknown_union_member_is_refused(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].operators[0].fused_activation = 0
    model.subgraphs[0].operators[0].options_type = 250  # no BuiltinOptions member has this value
    expect_failure(tmp_path, tb.build(model), UnsupportedModelError, r"union type 250")


@pytest.mark.parametrize("offset, size", [(4096, 16), (600, 2**64 - 1), (2**64 - 1, 16)])
def test_buffer_offset_beyond_the_file(tmp_path: Path, offset: int, size: int) -> None:
    model = tb.add_model()
    model.buffers[2] = None
    model.external_buffers = {2: (offset, size)}
    expect_failure(tmp_path, tb.build(model), InvalidModelError, "beyond the end of the file")


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="no such file"):
        rewrite(tmp_path / "missing.tflite", tmp_path / "out.tflite")
    with pytest.raises(InvalidModelError, match="directory"):
        rewrite(tmp_path, tmp_path / "out.tflite")
    assert os.listdir(tmp_path) == []


def test_errors_are_value_errors_and_rewrite_errors() -> None:
    assert issubclass(InvalidModelError, ValueError) and issubclass(InvalidModelError, RewriteError)
    assert issubclass(UnsupportedModelError, RewriteError)


SMALL = tb.build(tb.add_model())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(8, len(SMALL)),
)
def test_corrupt_bytes_never_crash(tmp_path: Path, edits, keep) -> None:  # type: ignore[no-untyped-def]
    """Any corruption either rewrites to a model that reads back, or raises our own error."""
    content = bytearray(SMALL)
    for position, value in edits:
        content[position] = value
    content = content[:keep]
    source, target = tmp_path / "fuzz.tflite", tmp_path / "fuzz_out.tflite"
    source.write_bytes(bytes(content))
    if target.exists():
        target.unlink()
    try:
        rewrite(source, target)
    except RewriteError:
        assert not target.exists()
    else:
        rewrite(target, tmp_path / "fuzz_again.tflite")
    assert source.read_bytes() == bytes(content)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tflite-fp16-")]
