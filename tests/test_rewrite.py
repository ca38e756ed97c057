"""The rewrite on models built for one feature each, run in LiteRT where they can run."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import oracle
import pytest
import runtime
import tflite
import tflite_builder as tb

from tflite_fp16 import plan_file, rewrite
from tflite_fp16.format.reader import open_model

DATA = Path(__file__).resolve().parent / "data"


def convert(tmp_path: Path, model: tb.Model, **options: Any) -> tuple:  # type: ignore[type-arg]
    source, target = tmp_path / "in.tflite", tmp_path / "out.tflite"
    content = tb.build(model)
    source.write_bytes(content)
    report = rewrite(source, target, **options)
    output = target.read_bytes()
    oracle.check_rewrite(content, output, **options)
    return report, source, target


def assert_same_outputs(source: Path, target: Path, **tolerance: float) -> None:
    for resolver in runtime.RESOLVERS:
        before, after = runtime.run(source, resolver), runtime.run(target, resolver)
        assert before.keys() == after.keys()
        for key in before:
            np.testing.assert_allclose(after[key], before[key], **tolerance)


def test_runnable_add_model(tmp_path: Path) -> None:
    report, source, target = convert(tmp_path, tb.add_model())
    assert report.tensors_converted == 1
    assert_same_outputs(source, target)  # weights exactly representable in float16


def test_old_format_operator_codes(tmp_path: Path) -> None:
    """Files from before schema 3a set only deprecated_builtin_code; builtin_code reads 0 (ADD)."""
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.MUL, old_format=True), tb.OperatorCode(tb.ADD, old_format=True)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([4], name="x"),
                    tb.Tensor([4], name="scale", buffer=1),
                    tb.Tensor([4], name="t"),
                    tb.Tensor([4], name="bias", buffer=2),
                    tb.Tensor([4], name="y"),
                ],
                operators=[tb.Operator(0, [0, 1], [2]), tb.Operator(1, [2, 3], [4])],
                inputs=[0],
                outputs=[4],
            )
        ],
        buffers=[None, tb.float_bytes([2, 0.5, -1, 3]), tb.float_bytes([0.25, 1, 2, -4])],
    )
    report, source, target = convert(tmp_path, model)
    assert report.tensors_converted == 2
    out = tflite.Model.GetRootAs(target.read_bytes(), 0)
    codes = [
        (out.OperatorCodes(i).DeprecatedBuiltinCode(), oracle.raw_builtin_code(out.OperatorCodes(i)))
        for i in range(out.OperatorCodesLength())
    ]
    assert codes[:2] == [(tb.MUL, 0), (tb.ADD, 0)], "original operator codes must be carried over as they are"
    assert codes[2] == (tb.DEQUANTIZE, tb.DEQUANTIZE)
    assert_same_outputs(source, target)


def test_existing_dequantize_code_is_reused_and_raised_to_version_3(tmp_path: Path) -> None:
    model = tb.add_model()
    model.operator_codes.append(tb.OperatorCode(tb.DEQUANTIZE, version=2, old_format=True))
    report, _, target = convert(tmp_path, model)
    assert report.plan.dequantize_opcode == 1
    out = tflite.Model.GetRootAs(target.read_bytes(), 0)
    assert out.OperatorCodesLength() == 2
    code = out.OperatorCodes(1)
    assert (code.DeprecatedBuiltinCode(), oracle.raw_builtin_code(code), code.Version()) == (6, 6, 3)


@pytest.mark.parametrize(
    "old, new", [("1.5.0", "1.15.0"), ("1.14.0", "1.15.0"), ("1.15.0", "1.15.0"), ("2.3.0", "2.3.0")]
)
def test_min_runtime_version_is_raised_never_lowered(tmp_path: Path, old: str, new: str) -> None:
    model = tb.add_model()
    model.buffers[4] = tb.version_bytes(old)
    _, _, target = convert(tmp_path, model)
    out = tflite.Model.GetRootAs(target.read_bytes(), 0)
    assert oracle.buffer_data(out, out.Metadata(0).Buffer()) == tb.version_bytes(new)


def test_min_runtime_version_listed_in_deprecated_metadata_buffer_is_raised_in_place(tmp_path: Path) -> None:
    """Older converters also list metadata buffers in Model.metadata_buffer; it must see the new version."""
    model = tb.add_model()
    model.metadata_buffer = [4]
    _, _, target = convert(tmp_path, model)
    out = tflite.Model.GetRootAs(target.read_bytes(), 0)
    assert out.MetadataBufferAsNumpy().tolist() == [4] and out.Metadata(0).Buffer() == 4
    assert oracle.buffer_data(out, 4) == tb.version_bytes("1.15.0")


def test_min_runtime_version_untouched_when_nothing_converts(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].tensors[1].type = tb.INT32
    _, _, target = convert(tmp_path, model)
    out = tflite.Model.GetRootAs(target.read_bytes(), 0)
    assert oracle.buffer_data(out, out.Metadata(0).Buffer()) == tb.version_bytes("1.5.0")


def test_buffer_shared_across_types_gets_split(tmp_path: Path) -> None:
    """As in control_flow.fp32.tflite: one buffer holds an INT32 0 and a FLOAT32 0.0."""
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.ADD)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([1], name="x"),
                    tb.Tensor([1], name="zero_f", buffer=1),
                    tb.Tensor([1], type=tb.INT32, name="zero_i", buffer=1),
                    tb.Tensor([1], name="y"),
                    tb.Tensor([1], type=tb.INT32, name="yi"),
                    tb.Tensor([1], type=tb.INT32, name="xi"),
                ],
                operators=[tb.Operator(0, [0, 1], [3]), tb.Operator(0, [5, 2], [4])],
                inputs=[0, 5],
                outputs=[3, 4],
            )
        ],
        buffers=[None, bytes(4)],
    )
    report, source, target = convert(tmp_path, model)
    (conversion,) = report.plan.conversions
    assert conversion.new_buffer and conversion.kept_by
    out = tflite.Model.GetRootAs(target.read_bytes(), 0)
    assert out.Subgraphs(0).Tensors(2).Buffer() == 1 and oracle.buffer_data(out, 1) == bytes(4)
    assert out.Subgraphs(0).Tensors(1).Buffer() == 2 and oracle.buffer_data(out, 2) == bytes(2)
    assert_same_outputs(source, target)


def test_constant_read_by_several_ops_and_slots_gets_one_dequantize(tmp_path: Path) -> None:
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.ADD), tb.OperatorCode(tb.MUL)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([3], name="x"),
                    tb.Tensor([3], name="w", buffer=1),
                    tb.Tensor([3], name="t"),
                    tb.Tensor([3], name="y"),
                ],
                operators=[tb.Operator(1, [1, 1], [2]), tb.Operator(0, [0, 1], [3])],
                inputs=[0],
                outputs=[3],
            )
        ],
        buffers=[None, tb.float_bytes([1.5, -3.0, 0.125])],
    )
    _report, source, target = convert(tmp_path, model)
    out = tflite.Model.GetRootAs(target.read_bytes(), 0).Subgraphs(0)
    assert out.OperatorsLength() == 3 and out.TensorsLength() == 5
    assert out.Operators(0).InputsAsNumpy().tolist() == [1]  # the DEQUANTIZE, first
    assert out.Operators(1).InputsAsNumpy().tolist() == [4, 4]
    assert out.Operators(2).InputsAsNumpy().tolist() == [0, 4]
    assert_same_outputs(source, target)


def test_sparse_constant_goes_through_densify_then_dequantize(tmp_path: Path) -> None:
    model, values = tb.sparse_add_model()
    source, target = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(model))
    report = rewrite(source, target)
    assert report.tensors_converted == 1 and len(report.plan.sparse_tensors) == 1
    out = tflite.Model.GetRootAs(target.read_bytes(), 0)
    sg = out.Subgraphs(0)
    ops = [oracle.op_of(out.OperatorCodes(sg.Operators(o).OpcodeIndex())) for o in range(sg.OperatorsLength())]
    assert ops == [tb.DENSIFY, tb.DEQUANTIZE, tb.ADD]
    half = sg.Operators(0).OutputsAsNumpy().tolist()[0]
    assert sg.Tensors(1).Type() == sg.Tensors(half).Type() == oracle.FLOAT16
    assert sg.Operators(1).InputsAsNumpy().tolist() == [half] and sg.Operators(1).OutputsAsNumpy().tolist() == [2]
    assert sg.Tensors(1).Sparsity() is not None
    assert oracle.buffer_data(out, sg.Tensors(1).Buffer()) == np.frombuffer(values, "<f4").astype("<f2").tobytes()
    assert_same_outputs(source, target)


def test_trailing_zip_of_associated_files_survives(tmp_path: Path) -> None:
    """TFLite metadata appends a zip (labels.txt, vocab) to the model; it must stay readable."""
    source, target = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes((DATA / "small_cnn.fp32.tflite").read_bytes())
    with zipfile.ZipFile(source, "a") as archive:
        archive.writestr("labels.txt", "cat\ndog\n")
        archive.writestr("vocab.txt", "a b c\n" * 100)
    original = source.read_bytes()
    report = rewrite(source, target)
    assert report.tensors_converted == 10
    output = target.read_bytes()
    trailing = original[len((DATA / "small_cnn.fp32.tflite").read_bytes()) :]
    assert output.endswith(trailing)
    with zipfile.ZipFile(io.BytesIO(output)) as archive:
        assert archive.read("labels.txt") == b"cat\ndog\n"
        assert archive.read("vocab.txt") == b"a b c\n" * 100
    assert runtime.max_abs_error(runtime.run(source), runtime.run(target)) < 1e-4
    # Rewriting the output again keeps the zip as it is.
    rewrite(target, tmp_path / "again.tflite")
    assert (tmp_path / "again.tflite").read_bytes() == output


def test_hybrid_operator_inputs_stay_float32(tmp_path: Path) -> None:
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.FULLY_CONNECTED, version=3), tb.OperatorCode(tb.ADD)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([1, 4], name="x"),
                    tb.Tensor([2, 4], type=tb.INT8, name="w", buffer=1, quantization=([0.5], [0])),
                    tb.Tensor([2], name="b", buffer=2),
                    tb.Tensor([1, 2], name="h"),
                    tb.Tensor([1, 2], name="c", buffer=3),
                    tb.Tensor([1, 2], name="y"),
                ],
                operators=[tb.Operator(0, [0, 1, 2], [3], fused_activation=0), tb.Operator(1, [3, 4], [5])],
                inputs=[0],
                outputs=[5],
            )
        ],
        buffers=[
            None,
            np.array([1, 2, 3, 4, -1, -2, -3, -4], "i1").tobytes(),
            tb.float_bytes([0.5, -0.5]),
            tb.float_bytes([1, 2]),
        ],
    )
    report, source, target = convert(tmp_path, model)
    assert [t.name for t in report.plan.tensors] == ["c"]
    assert [(k.name, k.reason) for k in report.kept] == [("b", "hybrid_operator")]
    assert "hybrid operator 0 (FULLY_CONNECTED)" in report.kept[0].detail
    assert_same_outputs(source, target)


def test_custom_operator_inputs_and_options_are_kept(tmp_path: Path) -> None:
    model = tb.add_model()
    model.operator_codes[0] = tb.OperatorCode(tb.CUSTOM, custom_code="MyOp")
    model.subgraphs[0].operators[0].custom_options = b"\x00custom\xffoptions"
    report, _, _ = convert(tmp_path, model)
    assert report.tensors_converted == 0
    assert report.kept[0].reason == "custom_operator" and "custom 'MyOp'" in report.kept[0].detail


def test_same_path_in_and_out(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    original = (DATA / "tiny_mlp.fp32.tflite").read_bytes()
    path.write_bytes(original)
    rewrite(path, path)
    oracle.check_rewrite(original, path.read_bytes())
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_dry_run_writes_nothing_and_explains(tmp_path: Path) -> None:
    plan = plan_file(DATA / "lstm_seq.fp32.tflite")
    assert len(plan.tensors) == 26
    described = plan.describe()
    assert "26 tensors" in described and "min_runtime_version: raised, 1.13.1 -> 1.15.0" in described
    assert "reduced_precision_support: added, fp16accfp32" in described
    assert (
        "CONVERSION_METADATA: updated, model_optimization_modes [] -> model_optimization_modes [PTQ_FLOAT16]"
        in described
    )
    assert "hybrid operator 0 (CONV_2D)" in plan_file(DATA / "int8_dynrange.int8.tflite").describe()
    report = rewrite(DATA / "lstm_seq.fp32.tflite", None)
    assert report.dry_run and report.size_after is None and not list(tmp_path.iterdir())
    assert len(report.converted) == 26 and all(c.rel_l2_error < 1e-3 for c in report.converted)


def test_weights_are_views_into_the_mapped_file() -> None:
    with open_model(DATA / "small_cnn.fp32.tflite") as model:
        data = [model.buffer_data(i) for i in range(len(model.buffers))]
        largest = max(data, key=lambda d: d.size)
        assert largest.size > 1000 and not largest.flags.owndata and not largest.flags.writeable
        del data, largest


def test_golden_bytes(tmp_path: Path) -> None:
    """The exact output for a fixed input: any change to the writer's layout shows here.

    If a change is intended, check the new file with the other tests and update the digest.
    """
    source = tmp_path / "in.tflite"
    source.write_bytes(tb.build(tb.add_model()))
    rewrite(source, tmp_path / "out.tflite")
    output = (tmp_path / "out.tflite").read_bytes()
    assert len(output) == GOLDEN_SIZE
    assert hashlib.sha256(output).hexdigest() == GOLDEN_SHA256


GOLDEN_SIZE = 864  # 768 before the reduced_precision_support entry (96 bytes: entry, buffer, data)
GOLDEN_SHA256 = "f551292b9474f7bcedd5d2a73424e8f539128288073b4b22ac4717d54b87515e"


def test_counts_and_data_over_many_batches_of_small_buffers(tmp_path: Path) -> None:
    """More small float32 buffers than one cast batch holds: every one exact, counts summed."""
    rng = np.random.default_rng(3)
    n_constants, size = 80, 60000  # 4.8 M values: more than one batch of small casts
    values = [(rng.standard_normal(size) * 3e4).astype("<f4") for _ in range(n_constants)]
    for v in values:
        v[:5] = [1e-9, -1e-8, 7e4, -1e5, 0.0]
    tensors = [tb.Tensor([size], name="x")]
    operators = []
    for i in range(n_constants):
        tensors.append(tb.Tensor([size], name=f"c{i}", buffer=i + 1))
        tensors.append(tb.Tensor([size], name=f"y{i}"))
        operators.append(tb.Operator(0, [0 if i == 0 else 2 * i, 2 * i + 1], [2 * i + 2]))
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.ADD)],
        subgraphs=[tb.Subgraph(tensors, operators, inputs=[0], outputs=[len(tensors) - 1])],
        buffers=[None] + [v.tobytes() for v in values],
    )
    report, _, _ = convert(tmp_path, model, lossy="convert")  # checks every float16 byte
    for value, entry in zip(values, report.converted):
        half = np.clip(value, -65504, 65504).astype("<f2")
        assert entry.saturated == int(np.count_nonzero(np.abs(value) > 65504))
        assert entry.flushed == int(np.count_nonzero((half == 0) & (value != 0)))
        assert entry.lossy  # values beyond 65504
    assert len(report.warnings) == n_constants


def test_weights_larger_than_a_cast_block_stream_through_the_writer(tmp_path: Path) -> None:
    """A weight bigger than one cast block (8 MiB) is cast block by block on threads while written."""
    from tflite_fp16.conversion.cast import BLOCK_ELEMENTS

    rows, columns = 1536, 2048
    assert rows * columns > BLOCK_ELEMENTS
    rng = np.random.default_rng(7)
    weights = (rng.standard_normal((rows, columns)) / np.sqrt(columns)).astype("<f4")
    weights[0, :3] = [1e5, -1e6, 1e-9]
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.FULLY_CONNECTED)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([1, columns], name="x"),
                    tb.Tensor([rows, columns], name="w", buffer=1),
                    tb.Tensor([1, rows], name="y"),
                ],
                operators=[tb.Operator(0, [0, 1, -1], [2])],
                inputs=[0],
                outputs=[2],
            )
        ],
        buffers=[None, weights.tobytes()],
        signatures=[tb.Signature("serving_default", 0, [("x", 0)], [("y", 2)])],
    )
    report, source, target = convert(tmp_path, model, lossy="convert")  # the oracle checks every float16 byte
    (entry,) = report.converted
    assert (entry.saturated, entry.infinity, entry.flushed) == (2, False, 1) and entry.lossy
    for resolver in runtime.RESOLVERS:
        reference, converted = runtime.run(source, resolver), runtime.run(target, resolver)
        np.testing.assert_allclose(
            converted["serving_default/y"][:, 1:], reference["serving_default/y"][:, 1:], atol=0.05
        )
