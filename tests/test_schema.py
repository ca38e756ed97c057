"""The schema record in schema/ matches the installed tflite and ai_edge_litert packages, and the reader honours it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tflite

from tflite_fp16.schema import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "scripts" / "generate_schema.py"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("schema_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_record_is_what_the_generator_writes_today() -> None:
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _schema_modules():  # type: ignore[no-untyped-def]
    """The generated schema code of both packages, imported (the generator reads it as text)."""
    from ai_edge_litert import schema_py_generated

    return (("tflite", tflite), ("ai_edge_litert", schema_py_generated))


def _package_tables(module):  # type: ignore[no-untyped-def]
    for name in dir(module):
        cls = getattr(module, name)
        if isinstance(cls, type) and hasattr(cls, "Init") and hasattr(cls, "GetRootAs"):
            yield name, cls


def _field_methods(cls: type):  # type: ignore[no-untyped-def]
    """The accessor of each field: not flatc's helpers (``ShapeLength`` next to ``Shape``),
    while a field really called ``length`` (ExternalBuffer) stays."""
    methods = {
        m
        for m in vars(cls)
        if m[0].isupper() and not m.startswith(("GetRootAs", "Init")) and not m.endswith("BufferHasIdentifier")
    }
    for method in methods:
        helper = any(
            method.endswith(suffix) and method[: -len(suffix)] in methods for suffix in ("Length", "IsNone", "AsNumpy")
        )
        if not helper:
            yield method


def test_record_has_every_table_and_field_of_both_packages() -> None:
    """Walk both packages' classes directly (not through the generator): every table and every
    accessor must be in the record."""
    record = json.loads((ROOT / "src" / "tflite_fp16" / "schema" / "tflite_schema.json").read_text())
    tables = record["tables"]
    for package, module in _schema_modules():
        seen = 0
        for name, cls in _package_tables(module):
            assert name in tables, f"{package}: table {name} is missing from the record"
            known = {f["name"].replace("_", "") for f in tables[name]["fields"]}
            for method in _field_methods(cls):
                assert method.lower() in known, f"{package}: {name}.{method} is missing from the record"
            seen += 1
        assert seen > 150, package


def test_record_has_every_enum_value_and_union_member_of_both_packages() -> None:
    record = json.loads((ROOT / "src" / "tflite_fp16" / "schema" / "tflite_schema.json").read_text())
    for package, module in _schema_modules():
        for enum, values in record["enums"].items():
            cls = getattr(module, enum)
            for key, value in vars(cls).items():
                if not key.startswith("_"):
                    assert values.get(key) == value, f"{package}: {enum}.{key} = {value} is missing from the record"
        for union, members in record["unions"].items():
            cls = getattr(module, union)
            for key, value in vars(cls).items():
                if not key.startswith("_") and value != 0:
                    assert members.get(str(value)) == key, (
                        f"{package}: union {union} member {key} is missing from the record"
                    )


def test_record_has_the_newest_schema() -> None:
    """What LiteRT's schema added after the tflite package (2.18.0) was released."""
    assert "external_buffer" in SCHEMA.tables["Tensor"].by_name
    assert {"external_buffer_groups", "external_buffers"} <= set(SCHEMA.tables["Model"].by_name)
    assert {
        "ExternalBuffer",
        "ExternalBufferGroup",
        "BlockwiseQuantization",
        "MultiAxisQuantization",
        "StablehloCaseOptions",
    } <= set(SCHEMA.tables)
    assert {"INT2", "UINT4", "FLOAT8_E4M3FN", "FLOAT8_E5M2"} <= set(SCHEMA.enums["TensorType"])
    assert "STABLEHLO_CASE" in SCHEMA.enums["BuiltinOperator"]
    assert {"BlockwiseQuantization", "MultiAxisQuantization"} <= set(SCHEMA.unions["QuantizationDetails"].values())


def test_slot_counts_match_the_package_builders() -> None:
    """Each table's slot count is the larger of the two packages' (a newer schema only adds fields)."""
    counts = {}
    for _package, module in _schema_modules():
        for name, _ in _package_tables(module):
            start = getattr(module, f"{name}Start", None) or getattr(sys.modules.get(f"tflite.{name}"), f"{name}Start")

            class Recorder:
                slots = 0

                def StartObject(self, n: int) -> None:
                    Recorder.slots = n

            start(Recorder())
            counts[name] = max(counts.get(name, 0), Recorder.slots)
    assert counts == {name: spec.slots for name, spec in SCHEMA.tables.items()}


def test_runtime_record_is_the_one_in_schema_dir() -> None:
    packages = json.loads((ROOT / "src" / "tflite_fp16" / "schema" / "tflite_schema.json").read_text())["packages"]
    assert set(packages) == {"tflite", "ai-edge-litert"}
    assert all(f"{name} {version}" in SCHEMA.source for name, version in packages.items())
    assert {"Model", "SubGraph", "Tensor", "Operator", "Buffer", "OperatorCode"} <= set(SCHEMA.tables)


def test_generator_refuses_packages_that_disagree() -> None:
    generator = _generator()
    table = {"slots": 1, "fields": [{"name": "a", "slot": 0, "kind": "scalar", "type": "int32", "default": 0}]}
    other = {"slots": 1, "fields": [{"name": "a", "slot": 0, "kind": "scalar", "type": "int64", "default": 0}]}
    assert generator._merge_table("T", table, table) == table
    with pytest.raises(SystemExit, match="disagree on T slot 0"):
        generator._merge_table("T", table, other)
    with pytest.raises(SystemExit, match=r"disagree on E\.X"):
        generator._merge_enum("E", {"X": 1}, {"X": 2})


def test_snake_case_spelling_of_schema_fbs() -> None:
    snake = _generator().snake_case
    assert snake("builtinOptions2Type") == "builtin_options_2_type"
    assert snake("largeCustomOptionsOffset") == "large_custom_options_offset"
    assert snake("opcodeIndex") == "opcode_index"


def test_conversion_metadata_record_reads_what_tensorflow_wrote() -> None:
    """Every corpus model carries TensorFlow 2.21's CONVERSION_METADATA: the record reads it whole
    (no field of an unknown slot), with the values TensorFlow writes."""
    from tflite_fp16.format.reader import parse_table, read_model
    from tflite_fp16.format.writer import serialize_table
    from tflite_fp16.schema import CONVERSION_SCHEMA

    modes = set(CONVERSION_SCHEMA.enums["ModelOptimizationMode"].values())
    seen = 0
    for path in sorted((ROOT / "tests" / "data").glob("*.tflite")):
        model = read_model(path)
        for entry in model.root.tables("metadata"):
            if entry.get("name") != b"CONVERSION_METADATA":
                continue
            raw = model.buffer_data(entry.get("buffer")).tobytes()
            table = parse_table(raw, CONVERSION_SCHEMA)
            environment = table.fields["environment"]
            assert environment.fields["tensorflow_version"] == b"2.21.0"
            assert (
                environment.get("model_hash") > 0
                and environment.get("model_type") in CONVERSION_SCHEMA.enums["ModelType"].values()
            )
            assert set(table.fields["options"].ints("model_optimization_modes")) <= modes
            expected = {1001} if ".tf_fp16." in path.name else (set() if ".fp32." in path.name else None)
            if expected is not None:
                assert set(table.fields["options"].ints("model_optimization_modes")) == expected, path.name
            again = parse_table(serialize_table(table), CONVERSION_SCHEMA)
            assert again.fields["environment"].fields == environment.fields
            seen += 1
    assert seen >= 20
