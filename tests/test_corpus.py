"""Real models made by TensorFlow 2.21 (tests/data, from the shared corpus):
converted, compared with TensorFlow's own float16 file, run in LiteRT."""

from __future__ import annotations

import collections
from collections import Counter
from pathlib import Path

import numpy as np
import oracle
import pytest
import runtime
import tflite

from tflite_fp16 import rewrite

DATA = Path(__file__).resolve().parent / "data"
FP32_MODELS = sorted(p.name.split(".")[0] for p in DATA.glob("*.fp32.tflite"))
INT8_MODELS = sorted(p.name.split(".")[0] for p in DATA.glob("*.int8.tflite"))


def test_corpus_is_present() -> None:
    assert len(FP32_MODELS) >= 12 and len(INT8_MODELS) == 2


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every model converted with TensorFlow's behaviour (lossy="convert")."""
    out = tmp_path_factory.mktemp("converted")
    for name in FP32_MODELS:
        rewrite(DATA / f"{name}.fp32.tflite", out / f"{name}.tflite", lossy="convert")
    return out


def float16_constants(path: Path) -> Counter[tuple[int, tuple[int, ...], bytes]]:
    model = tflite.Model.GetRootAs(path.read_bytes(), 0)
    found: Counter[tuple[int, tuple[int, ...], bytes]] = collections.Counter()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            if tensor.Type() == oracle.FLOAT16:
                shape = tuple(tensor.ShapeAsNumpy().tolist()) if not tensor.ShapeIsNone() else ()
                found[(s, shape, oracle.buffer_data(model, tensor.Buffer()))] += 1
    return found


@pytest.mark.parametrize("name", FP32_MODELS)
def test_structure_follows_the_rule(name: str, converted: Path, tmp_path: Path) -> None:
    before = (DATA / f"{name}.fp32.tflite").read_bytes()
    assert oracle.check_rewrite(before, (converted / f"{name}.tflite").read_bytes(), lossy="convert")
    # The default keeps lossy constants float32; only fp16_range has any.
    report = rewrite(DATA / f"{name}.fp32.tflite", tmp_path / "default.tflite")
    oracle.check_rewrite(before, (tmp_path / "default.tflite").read_bytes())
    assert bool(report.plan.kept_by_reason().get("lossy")) == (name == "fp16_range")


def test_default_keeps_fp16_range_constants_and_computes_what_float32_computes(tmp_path: Path) -> None:
    """fp16_range's constants lie beyond +-65504 or below float16's range: TensorFlow's rule breaks the
    model (relative L2 0.64), the default keeps them float32 and says why."""
    source, out = DATA / "fp16_range.fp32.tflite", tmp_path / "out.tflite"
    report = rewrite(source, out)
    assert report.tensors_converted == 0 and [k.reason for k in report.kept] == ["lossy"] * 3
    details = " ".join(k.detail for k in report.kept)
    assert "beyond +-65504" in details and "would become 0" in details
    assert out.read_bytes() == source.read_bytes()
    assert report.summary() == "nothing to convert: 3 float32 constants kept (3 lossy); input copied unchanged"


@pytest.mark.parametrize("name", FP32_MODELS)
def test_float16_data_is_bit_identical_to_tensorflow(name: str, converted: Path) -> None:
    ours = float16_constants(converted / f"{name}.tflite")
    theirs = float16_constants(DATA / f"{name}.tf_fp16.tflite")
    assert ours, "nothing was converted"
    # Same tensors (TensorFlow renames constants, so match by subgraph, shape and bytes).
    assert not ours - theirs, "float16 data that TensorFlow's file does not have"
    # TensorFlow's only extra float16 constants are the all-zero initial states it
    # adds for fused LSTM variable inputs (corpus README); those are not required.
    extra = theirs - ours
    assert all(not any(data) for (_, _, data) in extra), extra


@pytest.mark.parametrize("resolver", sorted(runtime.RESOLVERS))
@pytest.mark.parametrize("name", FP32_MODELS)
def test_runs_as_close_to_float32_as_tensorflow(name: str, resolver: str, converted: Path) -> None:
    reference = runtime.run(DATA / f"{name}.fp32.tflite", resolver)
    tensorflow_error = runtime.max_abs_error(reference, runtime.run(DATA / f"{name}.tf_fp16.tflite", resolver))
    ours = runtime.run(converted / f"{name}.tflite", resolver)
    error = runtime.max_abs_error(reference, ours)
    assert all(np.isfinite(v).all() for v in ours.values()) or name == "fp16_range"
    assert error <= 3 * tensorflow_error + 1e-7, (error, tensorflow_error)


@pytest.mark.parametrize("file_name", [f"{n}.tf_fp16.tflite" for n in FP32_MODELS] + ["int8_full.int8.tflite"])
def test_models_without_float32_constants_come_out_unchanged(file_name: str, tmp_path: Path) -> None:
    """TensorFlow's float16 files and the full-integer model: nothing to convert, same outputs."""
    source = DATA / file_name
    report = rewrite(source, tmp_path / "again.tflite")
    assert report.tensors_converted == 0 and report.unchanged
    assert (tmp_path / "again.tflite").read_bytes() == source.read_bytes()
    assert report.summary().startswith("nothing to convert: ")
    if "tf_fp16" in file_name:
        assert "float16 already" in report.summary()
    before, after = runtime.run(source), runtime.run(tmp_path / "again.tflite")
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def test_dynamic_range_model_keeps_hybrid_inputs_float32(tmp_path: Path) -> None:
    source = DATA / "int8_dynrange.int8.tflite"
    report = rewrite(source, tmp_path / "out.tflite")
    # Biases of the hybrid CONV_2D / FULLY_CONNECTED stay float32; only the float
    # depthwise kernel and its bias (read by a float DEPTHWISE_CONV_2D) convert.
    assert report.tensors_converted == 2
    assert report.plan.kept_by_reason() == {"hybrid_operator": 3}
    oracle.check_rewrite(source.read_bytes(), (tmp_path / "out.tflite").read_bytes())
    for resolver in runtime.RESOLVERS:
        before = runtime.run(source, resolver)
        after = runtime.run(tmp_path / "out.tflite", resolver)
        for key in before:
            np.testing.assert_allclose(after[key], before[key], rtol=1e-2, atol=1e-3)
