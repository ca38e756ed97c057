"""Models of LiteRT's newest schema (built with ai_edge_litert's generated code): external
buffers, INT2/UINT4/FLOAT8 tensors, blockwise and multi-axis quantization, STABLEHLO_CASE.
Converted where TensorFlow's rule says, every new field carried over, loadable where LiteRT
loads the input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import oracle
import pytest
import runtime
import tflite_builder as tb
from ai_edge_litert import schema_py_generated as S

from tflite_fp16 import InvalidModelError, rewrite, verify
from tflite_fp16.tools.inspect import inspect_file
from tflite_fp16.tools.widen import widen


def write(tmp_path: Path, model: Any, name: str = "in.tflite") -> Path:
    path = tmp_path / name
    path.write_bytes(tb.build_litert(model))
    return path


def unpack(path: Path) -> Any:
    return S.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)


def load_error(path: Path) -> str | None:
    """Why LiteRT's interpreter cannot load and run the model, or None when it can."""
    try:
        runtime.run(path, "builtin")
    except (RuntimeError, ValueError) as error:
        return str(error)
    return None


def convert(tmp_path: Path, model: Any, **options: Any) -> tuple[Path, Path, Any]:
    source = write(tmp_path, model)
    out = tmp_path / "out.tflite"
    report = rewrite(source, out, **options)
    oracle.check_rewrite(source.read_bytes(), out.read_bytes(), **options)
    return source, out, report


def test_external_buffer_tensor_is_kept_and_every_external_field_carried(tmp_path: Path) -> None:
    source, out, report = convert(tmp_path, tb.external_buffer_model())
    assert [c.name for c in report.converted] == ["c"]
    (kept,) = report.kept
    assert kept.name == "external/e" and kept.reason == "external" and "external buffer 7" in kept.detail
    assert kept.elements == 4
    before, after = unpack(source), unpack(out)
    assert after.subgraphs[0].tensors[1].externalBuffer == 7 and after.subgraphs[0].tensors[1].type == tb.FLOAT32
    assert (
        [(g.name,) for g in after.externalBufferGroups]
        == [(g.name,) for g in before.externalBufferGroups]
        == [(b"weights.bin",)]
    )
    assert [(e.id, e.group, e.offset, e.length, e.packing) for e in after.externalBuffers] == [(7, 0, 64, 16, b"raw")]
    # LiteRT's interpreter cannot load a model whose weights live elsewhere without a weight
    # loader: the output fails exactly as the input does, on the external tensor.
    assert load_error(source) is not None and load_error(out) == load_error(source)
    data = report.to_dict()
    assert data["kept_by_reason"] == {"external": 1}
    features = inspect_file(out)["features"]
    assert (features["external_tensors"], features["external_buffers"], features["external_buffer_groups"]) == (
        1,
        1,
        ["weights.bin"],
    )


def test_external_float16_tensor_is_not_widened(tmp_path: Path) -> None:
    _, out, _ = convert(tmp_path, tb.external_buffer_model(external_type=tb.FLOAT16))
    back = tmp_path / "back.tflite"
    report = widen(out, back)
    assert [w.name for w in report.widened] == ["c"]
    assert (
        "external/e" in [name for _, _, name, _ in report.float16_kept]
    ) is False  # no data here: not a constant to widen
    tensor = unpack(back).subgraphs[0].tensors[1]
    assert tensor.type == tb.FLOAT16 and tensor.externalBuffer == 7


@pytest.mark.parametrize("weight_type", [tb.INT4, tb.INT2])
def test_blockwise_quantized_model_converts_its_float_constants_and_runs(tmp_path: Path, weight_type: int) -> None:
    source, out, report = convert(tmp_path, tb.blockwise_fc_model(weight_type=weight_type))
    assert [c.name for c in report.converted] == ["scale/c"]
    assert {k.name: k.reason for k in report.kept} == {"fc/bias": "hybrid_operator"}
    before, after = unpack(source), unpack(out)
    weights_before, weights_after = before.subgraphs[0].tensors[1], after.subgraphs[0].tensors[1]
    assert weights_after.type == weight_type
    details = weights_after.quantization.details
    assert isinstance(details, S.BlockwiseQuantizationT)
    assert (details.scales, details.zeroPoints, details.blockSize) == (2, -1, 32)
    assert after.buffers[weights_after.buffer].data.tobytes() == before.buffers[weights_before.buffer].data.tobytes()
    assert after.subgraphs[0].tensors[2].type == tb.FLOAT16  # the scales the details name: untouched
    # LiteRT runs both: the float16 model stays within tolerance on N(0,1), zeros and large
    # inputs. XNNPACK has no INT2 kernel: verification then runs both on the builtin kernels.
    assert load_error(source) is None
    result = verify(source, out)
    assert result.passed and {c.sample for c in result.comparisons} == {"normal", "zeros", "large"}, result.summary()
    assert any("builtin kernels" in note for note in result.notes) == (weight_type == tb.INT2)
    for resolver in runtime.RESOLVERS if weight_type == tb.INT4 else ["builtin"]:
        expected, got = runtime.run(source, resolver), runtime.run(out, resolver)
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-2, atol=1e-2)


def test_tensor_named_by_quantization_details_stays_as_it_is(tmp_path: Path) -> None:
    """Float32 scales that an operator also reads: TensorFlow's rule would convert them, and the
    blockwise quantization would then name a float16 tensor. Kept, with the reason."""
    source, out, report = convert(tmp_path, tb.blockwise_fc_model(scale_type=tb.FLOAT32, scales_also_read=True))
    kept = {k.name: (k.reason, k.detail) for k in report.kept}
    assert kept["fc/scales"][0] == "quantization_detail"
    assert "scales of tensor 1's BlockwiseQuantization" in kept["fc/scales"][1]
    after = unpack(out)
    assert (
        after.subgraphs[0].tensors[2].type == tb.FLOAT32
        and after.subgraphs[0].tensors[1].quantization.details.scales == 2
    )
    expected, got = runtime.run(source, "builtin"), runtime.run(out, "builtin")
    np.testing.assert_array_equal(got["scales_copy"], expected["scales_copy"])  # computed from the untouched scales


def test_multi_axis_quantization_is_carried_over(tmp_path: Path) -> None:
    _source, out, report = convert(tmp_path, tb.blockwise_fc_model(multi_axis=[0, 1]))
    details = unpack(out).subgraphs[0].tensors[1].quantization.details
    assert isinstance(details, S.MultiAxisQuantizationT)
    assert (details.scales, details.zeroPoints, details.blockSize, list(details.quantizedDimensions)) == (
        2,
        -1,
        32,
        [0, 1],
    )
    assert [c.name for c in report.converted] == ["scale/c"]


def test_widen_renumbers_the_tensors_quantization_details_name(tmp_path: Path) -> None:
    """Widening removes DEQUANTIZE outputs placed before the scales tensor: the index follows."""
    model = tb.blockwise_fc_model()
    subgraph = model.subgraphs[0]
    # Put a float16 constant read through DEQUANTIZE at index 1, before the weights and scales.
    subgraph.tensors.insert(1, tb.litert_tensor([8], type=tb.FLOAT16, buffer=5, name="half"))
    subgraph.tensors.insert(2, tb.litert_tensor([8], name="half/dequantize"))
    for operator in subgraph.operators:
        operator.inputs = [i + 2 if i >= 1 else i for i in operator.inputs]
        operator.outputs = [i + 2 if i >= 1 else i for i in operator.outputs]
    subgraph.outputs = [i + 2 for i in subgraph.outputs]
    subgraph.tensors[3].quantization.details.scales = 4
    model.operatorCodes.append(tb.litert_code(tb.DEQUANTIZE, 3))
    subgraph.operators.insert(0, tb.litert_operator(2, [1], [2]))
    subgraph.operators[2].inputs = [6, 2]  # y = h * dequantize(half) instead of h * c
    model.buffers.append(tb.litert_buffer(np.linspace(-1, 1, 8).astype("<f2").tobytes()))
    source = write(tmp_path, model)
    back = tmp_path / "back.tflite"
    report = widen(source, back)
    assert [w.name for w in report.widened] == ["half"]
    tensors = unpack(back).subgraphs[0].tensors
    assert tensors[2].name == b"fc/weights" and tensors[3].name == b"fc/scales"
    assert tensors[2].quantization.details.scales == 3
    np.testing.assert_allclose(runtime.run(back, "builtin")["y"], runtime.run(source, "builtin")["y"], rtol=1e-6)


def test_uint4_and_float8_tensors_pass_through(tmp_path: Path) -> None:
    model = tb.blockwise_fc_model()
    subgraph = model.subgraphs[0]
    extra = [
        (tb.UINT4, b"\x12\x34"),
        (tb.FLOAT8_E4M3FN, b"\x38\x40\x48\x50"),
        (tb.FLOAT8_E5M2, b"\x3c\x40\x44\x48"),
        (tb.BFLOAT16, np.ones(4, "<u2").tobytes()),
    ]
    for type_, data in extra:
        model.buffers.append(tb.litert_buffer(data))
        subgraph.tensors.append(tb.litert_tensor([4], type=type_, buffer=len(model.buffers) - 1, name=f"type{type_}"))
    source, out, report = convert(tmp_path, model)
    before, after = unpack(source), unpack(out)
    for t in range(len(before.subgraphs[0].tensors) - len(extra), len(before.subgraphs[0].tensors)):
        a, b = before.subgraphs[0].tensors[t], after.subgraphs[0].tensors[t]
        assert a.type == b.type and after.buffers[b.buffer].data.tobytes() == before.buffers[a.buffer].data.tobytes()
    assert report.plan.constants["UINT4"] == 1 and report.plan.constants["FLOAT8_E5M2"] == 1


def test_stablehlo_case_branches_are_converted_and_their_indices_checked(tmp_path: Path) -> None:
    _source, out, report = convert(tmp_path, tb.case_model(branches=3))
    assert sorted(c.name for c in report.converted) == ["branch0/c", "branch1/c", "branch2/c"]
    options = unpack(out).subgraphs[0].operators[0].builtinOptions2
    assert isinstance(options, S.StablehloCaseOptionsT) and list(options.branchSubgraphIndices) == [1, 2, 3]
    for branch in (1, 2, 3):  # each branch: its DEQUANTIZE first, then its ADD
        ops = [op.opcodeIndex for op in unpack(out).subgraphs[branch].operators]
        assert ops == [2, 1]
    broken = tb.case_model(branches=2)
    broken.subgraphs[0].operators[0].builtinOptions2.branchSubgraphIndices = [1, 5]
    with pytest.raises(InvalidModelError, match=r"StablehloCaseOptions.branch_subgraph_indices refers to subgraph 5"):
        rewrite(write(tmp_path, broken, "broken.tflite"), tmp_path / "never.tflite")
    assert not (tmp_path / "never.tflite").exists()


def test_quantization_detail_index_outside_the_subgraph_is_refused(tmp_path: Path) -> None:
    model = tb.blockwise_fc_model()
    model.subgraphs[0].tensors[1].quantization.details.scales = 99
    with pytest.raises(InvalidModelError, match="quantization's scales refers to tensor 99"):
        rewrite(write(tmp_path, model), tmp_path / "out.tflite")


def test_a_field_newer_than_the_newest_schema_is_still_refused_by_name(tmp_path: Path) -> None:
    """LiteRT's schema grows: a slot after Tensor.external_buffer (slot 10) is unknown and refused."""
    from tflite_fp16 import UnsupportedModelError

    model = tb.add_model()
    model.subgraphs[0].tensors[1].extra_slot = (12, 3)
    source = tmp_path / "future.tflite"
    source.write_bytes(tb.build(model))
    with pytest.raises(UnsupportedModelError, match=r"Tensor .* vtable slot 12 .*ai-edge-litert .* update tflite-fp16"):
        rewrite(source, tmp_path / "out.tflite")
