"""Model-zoo tooling: back to float32 (widen), folders (batch), the float16 guard (check), inspect."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import oracle
import pytest
import runtime
import strategies
import tflite
import tflite_builder as tb
from hypothesis import HealthCheck, given, settings
from test_runtime_properties import runnable_models

from tflite_fp16 import check_many, rewrite, rewrite_many
from tflite_fp16.tools.batch import find_models
from tflite_fp16.tools.inspect import inspect_file
from tflite_fp16.tools.widen import widen, widen_bytes

DATA = Path(__file__).resolve().parent / "data"
FP32_MODELS = sorted(p.name.split(".")[0] for p in DATA.glob("*.fp32.tflite"))


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------- back to float32


def ops_of(model: Any, s: int) -> list[tuple]:  # type: ignore[type-arg]
    sg = model.Subgraphs(s)
    out = []
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        code = model.OperatorCodes(op.OpcodeIndex())
        out.append((oracle.op_of(code), code.CustomCode(), oracle.dump(op)["Inputs"], oracle.dump(op)["Outputs"]))
    return out


def assert_round_trip(original: bytes, float16: bytes, widened: bytes, converted: set) -> None:  # type: ignore[type-arg]
    """M -> our float16 -> float32 has M's tensors, operators (in order), signatures and metadata, and
    M's constants rounded through float16."""
    a, b = tflite.Model.GetRootAs(original, 0), tflite.Model.GetRootAs(widened, 0)
    assert a.SubgraphsLength() == b.SubgraphsLength()
    for s in range(a.SubgraphsLength()):
        sa, sb = a.Subgraphs(s), b.Subgraphs(s)
        assert sa.TensorsLength() == sb.TensorsLength()
        for t in range(sa.TensorsLength()):
            ta, tb_ = sa.Tensors(t), sb.Tensors(t)
            da, db = oracle.dump(ta), oracle.dump(tb_)
            data_a, data_b = oracle.buffer_data(a, ta.Buffer()), oracle.buffer_data(b, tb_.Buffer())
            if (s, t) in converted:
                rounded = np.clip(np.frombuffer(data_a, "<f4"), -65504, 65504).astype("<f2").astype("<f4")
                assert data_b == rounded.tobytes(), (s, t)
            else:
                assert data_a == data_b, (s, t)
            da.pop("Buffer"), db.pop("Buffer")
            assert da == db, (s, t)
        assert ops_of(a, s) == ops_of(b, s)
        assert (
            oracle.dump(sa)["Inputs"] == oracle.dump(sb)["Inputs"]
            and oracle.dump(sa)["Outputs"] == oracle.dump(sb)["Outputs"]
        )
    assert [oracle.dump(a.SignatureDefs(i)) for i in range(a.SignatureDefsLength())] == [
        oracle.dump(b.SignatureDefs(i)) for i in range(b.SignatureDefsLength())
    ]
    # The metadata is M's again: reduced_precision_support gone, CONVERSION_METADATA without
    # PTQ_FLOAT16 and with the hash of the widened file, which has M's structure, so M's hash.
    assert a.MetadataLength() == b.MetadataLength()
    for m in range(a.MetadataLength()):
        name = a.Metadata(m).Name()
        assert name == b.Metadata(m).Name()
        data_a, data_b = oracle.buffer_data(a, a.Metadata(m).Buffer()), oracle.buffer_data(b, b.Metadata(m).Buffer())
        if name == oracle.CONVERSION_METADATA:
            assert oracle.read_conversion_metadata(data_b) == oracle.read_conversion_metadata(data_a)
            assert oracle.read_conversion_metadata(data_b)["model_hash"] == oracle.tensorflow_model_hash(widened)
        elif name != b"min_runtime_version":
            assert data_a == data_b
    assert tflite.Model.GetRootAs(float16, 0).OperatorCodesLength() >= b.OperatorCodesLength()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(strategies.models())
def test_round_trip_over_random_models(tmp_path: Path, description: tb.Model) -> None:
    original = tb.build(description)
    source, half, back = tmp_path / "m.tflite", tmp_path / "h.tflite", tmp_path / "b.tflite"
    source.write_bytes(original)
    rewrite(source, half, lossy="convert")
    converted = oracle.check_rewrite(original, half.read_bytes(), lossy="convert")
    report = widen(half, back)
    assert len(report.widened) == len(converted)
    assert_round_trip(original, half.read_bytes(), back.read_bytes(), converted)
    assert widen(back, tmp_path / "again.tflite").unchanged  # nothing float16 is left to widen


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(runnable_models())
def test_widened_model_computes_bit_identically_to_the_float16_model(tmp_path: Path, model: tb.Model) -> None:
    source, half, back = tmp_path / "m.tflite", tmp_path / "h.tflite", tmp_path / "b.tflite"
    source.write_bytes(tb.build(model))
    rewrite(source, half, lossy="convert")
    widen(half, back)
    f16, f32 = runtime.run(half, "builtin"), runtime.run(back, "builtin")
    assert f16.keys() == f32.keys()
    for key in f16:
        np.testing.assert_array_equal(f16[key], f32[key])


def unread_buffers(path: Path) -> list[int]:
    """Buffers with data that no tensor or metadata entry reads (TensorFlow leaves a few)."""
    model = tflite.Model.GetRootAs(path.read_bytes(), 0)
    read = {model.Metadata(m).Buffer() for m in range(model.MetadataLength())} | {
        model.Subgraphs(s).Tensors(t).Buffer()
        for s in range(model.SubgraphsLength())
        for t in range(model.Subgraphs(s).TensorsLength())
    }
    return [b for b in range(model.BuffersLength()) if model.Buffers(b).DataLength() and b not in read]


@pytest.mark.parametrize("name", FP32_MODELS)
def test_corpus_round_trip_and_tensorflows_float16_models(name: str, tmp_path: Path) -> None:
    source, half, back, tf_back = (
        DATA / f"{name}.fp32.tflite",
        tmp_path / "h.tflite",
        tmp_path / "b.tflite",
        tmp_path / "tf.tflite",
    )
    rewrite(source, half, lossy="convert")
    converted = oracle.check_rewrite(source.read_bytes(), half.read_bytes(), lossy="convert")
    widen(half, back)
    assert_round_trip(source.read_bytes(), half.read_bytes(), back.read_bytes(), converted)
    # A fixpoint: converting the widened model again gives the float16 file byte for byte (the buffer
    # of the float16 declaration goes with it, and fields the file omitted stay omitted).
    again = tmp_path / "again.tflite"
    rewrite(back, again, lossy="convert")
    assert again.read_bytes() == half.read_bytes()
    assert unread_buffers(back) == unread_buffers(source)  # no data left behind that nothing reads
    # TensorFlow's own float16 file (DEQUANTIZE ops first, renamed tensors) goes back too.
    tf_half = DATA / f"{name}.tf_fp16.tflite"
    report = widen(tf_half, tf_back)
    model = tflite.Model.GetRootAs(tf_back.read_bytes(), 0)
    left = [
        (s, t)
        for s in range(model.SubgraphsLength())
        for t in range(model.Subgraphs(s).TensorsLength())
        if model.Subgraphs(s).Tensors(t).Type() == oracle.FLOAT16
    ]
    assert len(left) == len(report.float16_kept)  # only LSTM states TensorFlow initialises through DEQUANTIZE stay
    assert all("variable" in why for *_, why in report.float16_kept)
    for resolver in runtime.RESOLVERS:
        expected, got = runtime.run(tf_half, resolver), runtime.run(tf_back, resolver)
        for key in expected:
            if resolver == "builtin":
                np.testing.assert_array_equal(got[key], expected[key])
            else:
                np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6)
    # Without float16 left, the float16 declarations go; CONVERSION_METADATA's hash is the new file's either way.
    assert (b"reduced_precision_support" in tf_back.read_bytes()) == bool(left)
    tf_model = tflite.Model.GetRootAs(tf_back.read_bytes(), 0)
    entry = next(
        tf_model.Metadata(m)
        for m in range(tf_model.MetadataLength())
        if tf_model.Metadata(m).Name() == oracle.CONVERSION_METADATA
    )
    recorded = oracle.read_conversion_metadata(oracle.buffer_data(tf_model, entry.Buffer()))
    assert recorded["modes"] == ([oracle.PTQ_FLOAT16] if left else [])
    assert recorded["model_hash"] == oracle.tensorflow_model_hash(tf_back.read_bytes())


def test_sparse_float16_densify_dequantize_goes_back(tmp_path: Path) -> None:
    model, _ = tb.sparse_add_model()
    source, half, back = tmp_path / "in.tflite", tmp_path / "h.tflite", tmp_path / "b.tflite"
    source.write_bytes(tb.build(model))
    rewrite(source, half)
    report = widen(half, back)
    assert [(t.name, t.sparse, t.dequantize_ops) for t in report.widened] == [("w_sparse", True, 1)]
    assert back.read_bytes() != half.read_bytes()
    assert_round_trip(source.read_bytes(), half.read_bytes(), back.read_bytes(), {(0, 1)})
    for resolver in runtime.RESOLVERS:
        np.testing.assert_array_equal(
            runtime.run(back, resolver)["serving_default/y"], runtime.run(source, resolver)["serving_default/y"]
        )


def test_widen_cli_and_bytes(tmp_path: Path) -> None:
    half = tmp_path / "h.tflite"
    rewrite(DATA / "small_cnn.fp32.tflite", half)
    result = run(str(half), str(tmp_path / "b.tflite"), "--to", "float32", "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0 and result.stdout.startswith(
        "10 tensors widened to float32, 10 DEQUANTIZE ops removed"
    )
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["operation"] == "to_float32" and len(data["widened"]) == 10 and data["operator_codes_removed"] == 1
    assert [(m["name"], m["action"]) for m in data["metadata"]] == [
        ("reduced_precision_support", "removed"),
        ("CONVERSION_METADATA", "updated"),
    ]
    content, report = widen_bytes(half.read_bytes())
    assert content == (tmp_path / "b.tflite").read_bytes() and len(report.widened) == 10
    same = run(str(DATA / "small_cnn.fp32.tflite"), str(tmp_path / "c.tflite"), "--to", "float32")
    assert same.returncode == 0 and same.stdout.startswith("nothing to widen")
    assert (tmp_path / "c.tflite").read_bytes() == (DATA / "small_cnn.fp32.tflite").read_bytes()
    assert run(str(half), str(tmp_path / "d.tflite"), "--to", "float32", "--keep", "*").returncode == 2


# ---------------------------------------------------------------- folders


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    root = tmp_path / "zoo"
    (root / "vision").mkdir(parents=True)
    (root / "audio" / "v2").mkdir(parents=True)
    shutil.copy(DATA / "small_cnn.fp32.tflite", root / "vision" / "cnn.tflite")
    shutil.copy(DATA / "tiny_mlp.tf_fp16.tflite", root / "vision" / "mlp_fp16.tflite")
    shutil.copy(DATA / "embedding.fp32.tflite", root / "audio" / "v2" / "embed.tflite")
    (root / "audio" / "broken.tflite").write_bytes(b"not a model at all")
    (root / "audio" / "notes.txt").write_text("not a model, not a .tflite name")
    return root


def test_batch_cli_keeps_relative_paths_reports_failures_and_exits_1(zoo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(
        "-o", str(out), "-j", "2", "--json", str(tmp_path / "r.json"), str(zoo), str(DATA / "control_flow.fp32.tflite")
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [  # the path named once
        f"tflite-fp16: error: '{zoo / 'audio' / 'broken.tflite'}' is a text file, not a TFLite model"
    ]
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.tflite"))
    assert written == [
        "audio/v2/embed.tflite",
        "control_flow.fp32.tflite",
        "vision/cnn.tflite",
        "vision/mlp_fp16.tflite",
    ]
    assert (out / "vision" / "mlp_fp16.tflite").read_bytes() == (zoo / "vision" / "mlp_fp16.tflite").read_bytes()
    table = result.stdout.splitlines()
    assert table[0].split() == ["files", "5"] and table[1].split() == ["converted", "3"]
    assert table[2].split()[:2] == ["unchanged", "1"] and table[3].split() == ["failed", "1"]
    reports = json.loads((tmp_path / "r.json").read_text())
    assert [r["status"] for r in reports] == ["failed", "converted", "converted", "unchanged", "converted"]
    assert reports[0]["error"]["bad_input"] is True and reports[1]["report"]["converted"]
    oracle.check_rewrite((zoo / "vision" / "cnn.tflite").read_bytes(), (out / "vision" / "cnn.tflite").read_bytes())


def test_batch_in_place_and_back_to_float32(zoo: Path) -> None:
    (zoo / "audio" / "broken.tflite").unlink()
    original = (zoo / "vision" / "cnn.tflite").read_bytes()
    assert run("--in-place", "-q", str(zoo)).returncode == 0
    assert len((zoo / "vision" / "cnn.tflite").read_bytes()) < len(original)
    assert run("--check", str(zoo)).returncode == 0
    assert run("--in-place", "--to", "float32", "-q", str(zoo)).returncode == 0
    assert run("--check", str(zoo)).returncode == 4
    assert not list(zoo.rglob(".tflite-fp16*"))


def test_rewrite_many_with_a_process_pool_and_any_executor(zoo: Path, tmp_path: Path) -> None:
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        results = rewrite_many([zoo], tmp_path / "out", executor=pool, min_elements=16)
    by_name = {Path(r.input).name: r for r in results}
    assert by_name["broken.tflite"].status == "failed" and "not a TFLite model" in by_name["broken.tflite"].error
    assert by_name["cnn.tflite"].status == "converted" and by_name["mlp_fp16.tflite"].status == "unchanged"
    assert by_name["cnn.tflite"].report.options.min_elements == 16
    assert any(k.reason == "min_elements" for k in by_name["cnn.tflite"].report.kept)
    inline = rewrite_many([zoo / "vision" / "cnn.tflite"], tmp_path / "inline", jobs=1)
    assert inline[0].ok and (tmp_path / "inline" / "cnn.tflite").exists()
    with concurrent.futures.ThreadPoolExecutor(2) as threads:  # any Executor will do
        assert [r.status for r in rewrite_many([zoo / "vision"], tmp_path / "threads", executor=threads)] == [
            "converted",
            "unchanged",
        ]
    with pytest.raises(ValueError, match="out_dir, or in_place"):
        rewrite_many([zoo], None)


def test_two_inputs_with_one_output_path_do_not_overwrite_each_other(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(DATA / "tiny_mlp.fp32.tflite", tmp_path / "a" / "m.tflite")
    shutil.copy(DATA / "small_cnn.fp32.tflite", tmp_path / "b" / "m.tflite")
    results = rewrite_many([tmp_path / "a" / "m.tflite", tmp_path / "b" / "m.tflite"], tmp_path / "out", jobs=1)
    assert [r.status for r in results] == ["converted", "failed"] and "same output" in results[1].error


# ---------------------------------------------------------------- check


def test_check_is_a_pipeline_guard(zoo: Path, tmp_path: Path) -> None:
    result = run("--check", "--json", str(tmp_path / "c.json"), str(zoo))
    assert result.returncode == 4
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"'{zoo / 'vision' / 'cnn.tflite'}': 10 tensors would convert") for line in lines)
    assert lines[-1] == "check: 4 files, 2 with constants to convert, 1 unreadable"
    assert "broken.tflite" in result.stderr
    data = json.loads((tmp_path / "c.json").read_text())
    assert sum(not r["passes"] for r in data) == 3 and not list(tmp_path.glob("*.tflite"))
    assert run("--check", str(zoo / "vision" / "mlp_fp16.tflite")).returncode == 0
    assert run("--check", str(zoo / "audio" / "broken.tflite")).returncode == 2
    results = check_many([zoo / "vision"])
    assert [r.passes for r in results] == [False, True] and len(results[0].would_convert) == 10


# ---------------------------------------------------------------- inspect


def test_inspect_reports_the_file(tmp_path: Path) -> None:
    info = inspect_file(DATA / "lstm_seq.tf_fp16.tflite")
    assert (
        info["schema_version"] == 3
        and info["layout"] == "normal"
        and info["appended"] == {"bytes": 0, "zip_files": None}
    )
    assert info["subgraphs"][0]["operators"] == 34
    (signature,) = info["signatures"]
    assert signature["inputs"] == [{"name": "input_1", "tensor": 0, "shape": [1, 12, 8], "type": "FLOAT32"}]
    assert {"operator": "DEQUANTIZE", "version": 3, "count": 30} in info["operators"]
    assert info["tensors_by_type"]["FLOAT16"]["constants"] == 30 and info["float16_constants_feeding_dequantize"] == 30
    metadata = {m["name"]: m["value"] for m in info["metadata"]}
    assert metadata["reduced_precision_support"] == "fp16accfp32" and metadata["min_runtime_version"] == "1.15.0"
    assert metadata["CONVERSION_METADATA"]["optimization_modes"] == ["PTQ_FLOAT16"]
    assert metadata["CONVERSION_METADATA"]["tensorflow_version"] == "2.21.0"
    assert info["features"]["variables"] == 4 and info["rewrite"]["tensors_converted"] == 0


def test_inspect_layout_appended_zip_features_and_plan(tmp_path: Path) -> None:
    from tflite_fp16.format.reader import read_model
    from tflite_fp16.format.writer import write_model

    path = tmp_path / "m.tflite"
    write_model(read_model(DATA / "int8_dynrange.int8.tflite"), path, layout="offset")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("labels.txt", "cat\n")
    info = inspect_file(path)
    assert info["layout"] == "offset" and info["buffers_after_flatbuffer"] > 0
    assert info["appended"]["zip_files"] == ["labels.txt"]
    assert info["features"]["quantization"] == {"per-axis INT8": 3} and info["features"]["misaligned_buffers"] == 0
    assert info["rewrite"]["tensors_converted"] == 2 and info["rewrite"]["kept_by_reason"] == {"hybrid_operator": 3}
    assert inspect_file(DATA / "int8_dynrange.int8.tflite")["features"]["misaligned_buffers"] > 0  # TensorFlow's own


def test_inspect_cli(tmp_path: Path) -> None:
    text = run("inspect", str(DATA / "control_flow.fp32.tflite"))
    assert text.returncode == 0 and all(len(line) <= 100 for line in text.stdout.splitlines())
    assert "control flow (IF, WHILE)" in text.stdout and "rewrite" in text.stdout
    data = json.loads(run("inspect", "--json", "-", str(DATA / "control_flow.fp32.tflite")).stdout)
    assert data["file"].endswith("control_flow.fp32.tflite") and len(data["subgraphs"]) == 5
    bad = run("inspect", str(tmp_path / "missing.tflite"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_results_come_in_the_order_of_the_inputs(tmp_path: Path) -> None:
    """Each folder's files in sorted order, the inputs in the order given (not sorted together:
    a file given after a folder comes after it, whatever its path)."""
    folder = tmp_path / "z_folder"
    (folder / "b").mkdir(parents=True)
    for name in ("b/two.tflite", "one.tflite", "b/a.tflite"):
        (folder / name).write_bytes((DATA / "tiny_mlp.fp32.tflite").read_bytes())
    early = tmp_path / "a_first.tflite"
    early.write_bytes((DATA / "tiny_mlp.fp32.tflite").read_bytes())
    models, refused = find_models([folder, early])
    assert refused == [] and [str(relative) for _, relative in models] == [
        "b/a.tflite",
        "b/two.tflite",
        "one.tflite",
        "a_first.tflite",
    ]
    results = rewrite_many([folder, early], tmp_path / "out", jobs=2)
    assert [Path(r.input).name for r in results] == ["a.tflite", "two.tflite", "one.tflite", "a_first.tflite"]
