"""The schema record in schema/ matches the installed tflite package, and the reader honours it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import tflite

from tflite_fp16.schema import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "schema" / "generate.py"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("schema_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_record_is_what_the_generator_writes_today() -> None:
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_record_has_every_table_and_field_of_the_package() -> None:
    """Walk the package's classes directly (not through the generator): every table,
    every accessor, and every vtable slot a table starts with, must be in the record."""
    record = json.loads((ROOT / "schema" / "tflite_schema.json").read_text())
    tables = record["tables"]
    for name in dir(tflite):
        cls = getattr(tflite, name)
        if not isinstance(cls, type) or not hasattr(cls, "Init") or not hasattr(cls, "GetRootAs"):
            continue
        assert name in tables, f"table {name} is missing from the record"
        known = {f["name"].replace("_", "") for f in tables[name]["fields"]}
        for method in vars(cls):
            if method[0].isupper() and not method.startswith(("GetRootAs", "Init")) and not method.endswith(
                ("Length", "IsNone", "AsNumpy", "BufferHasIdentifier")
            ):
                assert method.lower() in known, f"{name}.{method} is missing from the record"


def test_slot_counts_match_the_package_builders() -> None:
    for name, spec in SCHEMA.tables.items():
        module = getattr(tflite, name)
        start = getattr(module, f"{name}Start", None) or getattr(sys.modules[f"tflite.{name}"], f"{name}Start")

        class Recorder:
            slots = None

            def StartObject(self, n: int) -> None:  # noqa: N802 (flatbuffers' name)
                Recorder.slots = n

        start(Recorder())
        assert Recorder.slots == spec.slots, name


def test_runtime_record_is_the_one_in_schema_dir() -> None:
    assert SCHEMA.tflite_version == json.loads((ROOT / "schema" / "tflite_schema.json").read_text())["tflite_package_version"]
    assert {"Model", "SubGraph", "Tensor", "Operator", "Buffer", "OperatorCode"} <= set(SCHEMA.tables)


def test_snake_case_spelling_of_schema_fbs() -> None:
    snake = _generator().snake_case
    assert snake("builtinOptions2Type") == "builtin_options_2_type"
    assert snake("largeCustomOptionsOffset") == "large_custom_options_offset"
    assert snake("opcodeIndex") == "opcode_index"


def test_conversion_metadata_record_reads_what_tensorflow_wrote() -> None:
    """Every corpus model carries TensorFlow 2.21's CONVERSION_METADATA: the record reads it whole
    (no field of an unknown slot), with the values TensorFlow writes."""
    from tflite_fp16.reader import parse_table, read_model
    from tflite_fp16.schema import CONVERSION_SCHEMA
    from tflite_fp16.writer import serialize_table

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
            assert environment.get("model_hash") > 0 and environment.get("model_type") in CONVERSION_SCHEMA.enums["ModelType"].values()
            assert set(table.fields["options"].ints("model_optimization_modes")) <= modes
            expected = {1001} if ".tf_fp16." in path.name else (set() if ".fp32." in path.name else None)
            if expected is not None:
                assert set(table.fields["options"].ints("model_optimization_modes")) == expected, path.name
            again = parse_table(serialize_table(table), CONVERSION_SCHEMA)
            assert again.fields["environment"].fields == environment.fields
            seen += 1
    assert seen >= 20
