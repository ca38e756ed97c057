"""What the float16 file declares, as TensorFlow's float16 files do: reduced_precision_support,
CONVERSION_METADATA (PTQ_FLOAT16 and TensorFlow's model hash), min_runtime_version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import oracle
import pytest
import runtime
import tflite_builder as tb

from tflite_fp16 import rewrite, rewrite_bytes
from tflite_fp16.conversion.metadata import model_hash
from tflite_fp16.format.reader import read_model
from tflite_fp16.tools.widen import widen

DATA = Path(__file__).resolve().parent / "data"
FP32_MODELS = sorted(p.name.split(".")[0] for p in DATA.glob("*.fp32.tflite"))


def metadata(content: bytes) -> dict[bytes, bytes]:
    model = oracle.tflite.Model.GetRootAs(content, 0)
    entries = [model.Metadata(m) for m in range(model.MetadataLength())]
    return {e.Name(): oracle.buffer_data(model, e.Buffer()) for e in entries}


def metadata_names(content: bytes) -> list[bytes]:
    model = oracle.tflite.Model.GetRootAs(content, 0)
    return [model.Metadata(m).Name() for m in range(model.MetadataLength())]


def stored_hash(content: bytes) -> int:
    return oracle.read_conversion_metadata(metadata(content)[oracle.CONVERSION_METADATA])["model_hash"]


# ---------------------------------------------------------------- TensorFlow's model hash


@pytest.mark.parametrize("path", sorted(DATA.glob("*.tflite")), ids=lambda p: p.name)
def test_model_hash_is_what_tensorflow_stored(path: Path) -> None:
    """Every corpus file, float32, TensorFlow's float16 and int8 alike, carries the hash TensorFlow
    2.21 computed over that very file: ours and the oracle's (NumPy, after TensorFlow's source) agree."""
    content = path.read_bytes()
    assert model_hash(read_model(path).root) == stored_hash(content)
    assert oracle.tensorflow_model_hash(content) == stored_hash(content)


def test_hash_counts_what_tensorflow_counts() -> None:
    """Each part of the structure moves the hash: operator inputs, a shape, a data length, the counts."""
    from tflite_fp16.format.model import Table

    def root(inputs=(0, 1), shape=(4,), data=4, outputs=(2,)):  # type: ignore[no-untyped-def]
        tensors = (Table("Tensor", {"shape": np.array(shape, "<i4"), "buffer": 1}), Table("Tensor", {"buffer": 0}))
        operator = Table("Operator", {"inputs": np.array(inputs, "<i4"), "outputs": np.array(outputs, "<i4")})
        subgraph = Table(
            "SubGraph",
            {
                "tensors": tensors,
                "operators": (operator,),
                "inputs": np.array([0], "<i4"),
                "outputs": np.array(outputs, "<i4"),
            },
        )
        buffers = (Table("Buffer", {}), Table("Buffer", {"data": np.zeros(data, np.uint8)}))
        return Table("Model", {"subgraphs": (subgraph,), "buffers": buffers})

    base = model_hash(root())
    variants = [root(inputs=(1, 0)), root(inputs=(0, -1)), root(shape=(2, 2)), root(data=8), root(outputs=(2, 3))]
    assert len({base} | {model_hash(v) for v in variants}) == 1 + len(variants)
    assert model_hash(root(data=8), "offset") == model_hash(
        root(data=4), "offset"
    )  # no data vector in the offset layout
    assert model_hash(root(data=0), "offset") != model_hash(root(data=4), "offset")  # an empty vector stays a vector


@pytest.mark.parametrize("name", FP32_MODELS)
def test_our_float16_file_declares_what_tensorflows_does(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out.tflite"
    rewrite(DATA / f"{name}.fp32.tflite", out, lossy="convert")
    ours, theirs = out.read_bytes(), (DATA / f"{name}.tf_fp16.tflite").read_bytes()
    # The same entries in the same order, the same reduced_precision_support and min_runtime_version bytes.
    assert (
        metadata_names(ours)
        == metadata_names(theirs)
        == [b"min_runtime_version", b"reduced_precision_support", b"CONVERSION_METADATA"]
    )
    for key in (b"reduced_precision_support", b"min_runtime_version"):
        assert metadata(ours)[key] == metadata(theirs)[key], key
    assert metadata(ours)[b"reduced_precision_support"] == b"fp16accfp32"  # 11 bytes, no terminating zero
    # CONVERSION_METADATA: TensorFlow's fields, PTQ_FLOAT16, and the hash of our file.
    recorded, tensorflows = (
        oracle.read_conversion_metadata(metadata(c)[oracle.CONVERSION_METADATA]) for c in (ours, theirs)
    )
    assert recorded.pop("model_hash") == oracle.tensorflow_model_hash(ours)
    tensorflows.pop("model_hash")
    assert recorded == tensorflows and recorded["modes"] == [oracle.PTQ_FLOAT16]


@pytest.mark.parametrize("name", ["small_cnn", "gru_seq", "control_flow"])
def test_hash_after_the_round_trip_is_the_original_files(name: str, tmp_path: Path) -> None:
    """float32 -> ours -> back to float32 has the original structure: TensorFlow's own hash of the
    original file comes back (the strongest check that our hash is TensorFlow's)."""
    source, half, back = DATA / f"{name}.fp32.tflite", tmp_path / "h.tflite", tmp_path / "b.tflite"
    rewrite(source, half, lossy="convert")
    widen(half, back)
    assert stored_hash(back.read_bytes()) == stored_hash(source.read_bytes())
    assert stored_hash(half.read_bytes()) != stored_hash(source.read_bytes())  # more tensors and operators


def test_hash_follows_the_layout(tmp_path: Path) -> None:
    """In the offset layout buffer data is not a flatbuffer vector, so TensorFlow's function does not
    count its length: the hash differs from the normal layout's, and each is the file's."""
    source = DATA / "small_cnn.fp32.tflite"
    normal, offset = tmp_path / "normal.tflite", tmp_path / "offset.tflite"
    rewrite(source, normal)
    rewrite(source, offset, layout="offset")
    hashes = [stored_hash(p.read_bytes()) for p in (normal, offset)]
    assert hashes[0] != hashes[1]
    assert hashes == [oracle.tensorflow_model_hash(p.read_bytes()) for p in (normal, offset)]
    oracle.check_rewrite(source.read_bytes(), offset.read_bytes())
    in_memory, _ = rewrite_bytes(source.read_bytes(), layout="offset")  # the same path, without a file
    assert in_memory == offset.read_bytes()
    for resolver in runtime.RESOLVERS:  # LiteRT reads the entry's buffer after the flatbuffer too
        assert runtime.max_abs_error(runtime.run(normal, resolver), runtime.run(offset, resolver)) == 0


# ---------------------------------------------------------------- reduced_precision_support


def with_metadata(entries: dict[str, bytes], shared: bool = False) -> tb.Model:
    model = tb.add_model()
    for name, value in entries.items():
        model.buffers.append(value)
        model.metadata = list(model.metadata) + [(name, len(model.buffers) - 1)]
    if shared:  # two entries read one buffer
        model.metadata = list(model.metadata) + [("also_reads_it", len(model.buffers) - 1)]
    return model


def convert(tmp_path: Path, model: tb.Model, **options: Any) -> bytes:
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(model))
    report = rewrite(source, out, **options)
    oracle.check_rewrite(source.read_bytes(), out.read_bytes(), **options)
    convert.report = report  # type: ignore[attr-defined]
    return out.read_bytes()


def test_added_when_absent_and_no_conversion_metadata_is_invented(tmp_path: Path) -> None:
    out = convert(tmp_path, tb.add_model())
    assert metadata_names(out) == [b"min_runtime_version", b"reduced_precision_support"]
    assert metadata(out)[b"reduced_precision_support"] == b"fp16accfp32"
    assert b"CONVERSION_METADATA" not in out
    changes = [(c.name, c.action) for c in convert.report.plan.metadata]  # type: ignore[attr-defined]
    assert changes == [("min_runtime_version", "raised"), ("reduced_precision_support", "added")]


@pytest.mark.parametrize("shared", [False, True])
def test_an_existing_entry_is_replaced_not_repeated(tmp_path: Path, shared: bool) -> None:
    model = with_metadata({"reduced_precision_support": b"bf16accfp32\0"}, shared=shared)
    out = convert(tmp_path, model)
    assert metadata_names(out).count(b"reduced_precision_support") == 1
    assert metadata(out)[b"reduced_precision_support"] == b"fp16accfp32"
    if shared:  # the other entry still reads the old bytes
        assert metadata(out)[b"also_reads_it"] == b"bf16accfp32\0"
    (change,) = [c for c in convert.report.plan.metadata if c.name == "reduced_precision_support"]  # type: ignore[attr-defined]
    assert (change.action, change.before, change.after) == ("replaced", "bf16accfp32\0", "fp16accfp32")


def test_fp16_compute_declares_float16_arithmetic_and_still_runs(tmp_path: Path) -> None:
    source, out = DATA / "small_cnn.fp32.tflite", tmp_path / "out.tflite"
    result = subprocess.run(
        [sys.executable, "-m", "tflite_fp16", str(source), str(out), "--fp16-compute", "--verify", "--json", "-"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["options"]["fp16_compute"] is True
    assert {"name": "reduced_precision_support", "action": "added", "before": None, "after": "fp16accfp16"} in report[
        "metadata"
    ]
    assert report["verify"]["passed"] is True
    assert metadata(out.read_bytes())[b"reduced_precision_support"] == b"fp16accfp16"
    oracle.check_rewrite(source.read_bytes(), out.read_bytes(), fp16_compute=True)


def test_nothing_converted_declares_nothing(tmp_path: Path) -> None:
    source = DATA / "int8_full.int8.tflite"
    out = tmp_path / "out.tflite"
    report = rewrite(source, out)
    assert report.unchanged and report.plan.metadata == () and out.read_bytes() == source.read_bytes()


# ---------------------------------------------------------------- CONVERSION_METADATA


def conversion_metadata_of(name: str) -> bytes:
    return metadata((DATA / name).read_bytes())[b"CONVERSION_METADATA"]


def test_ptq_float16_is_recorded_once(tmp_path: Path) -> None:
    """A CONVERSION_METADATA that lists PTQ_FLOAT16 already (as TensorFlow's float16 files do) keeps
    one; other modes (int8's PTQ_FULL_INTEGER) stay, in their order."""
    for name, expected in (("small_cnn.tf_fp16.tflite", [1001]), ("int8_full.int8.tflite", [1003, 1001])):
        model = with_metadata({"CONVERSION_METADATA": conversion_metadata_of(name)})
        out = convert(tmp_path, model)
        recorded = oracle.read_conversion_metadata(metadata(out)[b"CONVERSION_METADATA"])
        assert recorded["modes"] == expected and recorded["tensorflow_version"] == b"2.21.0"
        assert metadata_names(out)[-2:] == [b"reduced_precision_support", b"CONVERSION_METADATA"]


def test_unreadable_conversion_metadata_is_left_with_a_warning(tmp_path: Path) -> None:
    garbage = b"\xff" * 24
    source, target = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(with_metadata({"CONVERSION_METADATA": garbage})))
    report = rewrite(source, target)
    assert metadata(target.read_bytes())[b"CONVERSION_METADATA"] == garbage
    assert any(
        "CONVERSION_METADATA cannot be read" in w and "does not record the float16 conversion" in w
        for w in report.warnings
    )


def test_back_to_float32_undoes_the_declarations(tmp_path: Path) -> None:
    source, half, back = DATA / "tiny_mlp.fp32.tflite", tmp_path / "h.tflite", tmp_path / "b.tflite"
    rewrite(source, half)
    widen(half, back)
    assert metadata_names(back.read_bytes()) == metadata_names(source.read_bytes())
    recorded = oracle.read_conversion_metadata(metadata(back.read_bytes())[b"CONVERSION_METADATA"])
    assert recorded == oracle.read_conversion_metadata(metadata(source.read_bytes())[b"CONVERSION_METADATA"])


def test_hostile_conversion_metadata_never_stops_the_rewrite(tmp_path: Path) -> None:
    """Truncated, out-of-range, oversized or random CONVERSION_METADATA bytes: the model converts, the
    entry stays as it was, and a warning says it was not updated."""
    valid = conversion_metadata_of("small_cnn.fp32.tflite")
    rng = np.random.default_rng(0)
    payloads = [valid[:7], valid[:30], b"\xff\xff\xff\x7f" + valid[4:], valid[:4] + b"\xff" * (len(valid) - 4)]
    payloads += [bytes(rng.integers(0, 256, size=int(rng.integers(8, 120)), dtype=np.uint8)) for _ in range(40)]
    for i, payload in enumerate(payloads):
        source, target = tmp_path / f"in{i}.tflite", tmp_path / f"out{i}.tflite"
        source.write_bytes(tb.build(with_metadata({"CONVERSION_METADATA": payload})))
        report = rewrite(source, target)
        assert report.tensors_converted == 1
        written = metadata(target.read_bytes())[b"CONVERSION_METADATA"]
        if any("CONVERSION_METADATA cannot be read" in w for w in report.warnings):
            assert written == payload
        else:  # random bytes that happen to parse: updated like any other
            assert oracle.PTQ_FLOAT16 in oracle.read_conversion_metadata(written)["modes"]
