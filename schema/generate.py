"""Write ``schema/tflite_schema.json``: the TFLite schema revision tflite-fp16 supports
(and ``schema/conversion_metadata.json``: the schema of TensorFlow's CONVERSION_METADATA entry).

The record lists every table of the schema with every field: its slot in the
vtable, what kind of value it holds (scalar, string, table, vector, union) and,
for scalars, the type and the default. The reader checks each table it parses
against this record, so that a field written by a newer schema is detected
(and the model refused) instead of being dropped on the way through.

The record is derived from the flatc-generated Python code of the installed
``tflite`` package, read as source text (the package is not imported):

    python schema/generate.py            # rewrite the record
    python schema/generate.py --check    # exit 1 if the record is out of date
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

RECORD = Path(__file__).resolve().with_name("tflite_schema.json")
CONVERSION_RECORD = Path(__file__).resolve().with_name("conversion_metadata.json")

# conversion_metadata.fbs (TensorFlow's tensorflow/compiler/mlir/lite/schema, LiteRT's
# tflite/converter/schema): the CONVERSION_METADATA entry TensorFlow writes into every model it
# converts. No installed package carries generated code for it, so it is described here, field
# by field in slot order: (name, kind, scalar type or table, default). tests/test_schema.py checks
# it against the entries TensorFlow 2.21 wrote into the corpus models.
CONVERSION_METADATA_TABLES = {
    "Environment": [
        ("tensorflow_version", "string", None, None),
        ("api_version", "scalar", "uint32", 0),
        ("model_type", "scalar", "int32", 0),  # enum ModelType
        ("model_hash", "scalar", "uint64", 0),
    ],
    "SparsityBlockSize": [("values", "vector_scalar", "uint32", None)],
    "ConversionOptions": [
        ("model_optimization_modes", "vector_scalar", "int32", None),  # enum ModelOptimizationMode
        ("allow_custom_ops", "scalar", "bool", False),
        ("enable_select_tf_ops", "scalar", "bool", False),
        ("force_select_tf_ops", "scalar", "bool", False),
        ("sparsity_block_sizes", "vector_table", "SparsityBlockSize", None),
    ],
    "ConversionMetadata": [
        ("environment", "table", "Environment", None),
        ("options", "table", "ConversionOptions", None),
    ],
}
CONVERSION_METADATA_ENUMS = {
    "ModelType": {"NONE": 0, "TF_SAVED_MODEL": 1, "KERAS_MODEL": 2, "TF_CONCRETE_FUNCTIONS": 3, "TF_GRAPH_DEF": 4,
                  "TF_SESSION": 5, "JAX": 6, "PYTORCH": 7},
    "ModelOptimizationMode": {"PTQ_FLOAT16": 1001, "PTQ_DYNAMIC_RANGE": 1002, "PTQ_FULL_INTEGER": 1003, "PTQ_INT16": 1004,
                              "QUANTIZATION_AWARE_TRAINING": 2000, "RANDOM_SPARSITY": 3001, "BLOCK_SPARSITY": 3002,
                              "STRUCTURED_SPARSITY": 3003},
}

# flatc's Python code does not name the union type of a union field; the
# TFLite schema has five. A new one makes this script fail until it is added.
UNION_FIELDS = {
    ("Operator", "builtin_options"): "BuiltinOptions",
    ("Operator", "builtin_options_2"): "BuiltinOptions2",
    ("QuantizationParameters", "details"): "QuantizationDetails",
    ("DimensionMetadata", "array_segments"): "SparseIndexVector",
    ("DimensionMetadata", "array_indices"): "SparseIndexVector",
}
# Fields schema.fbs marks deprecated: flatc emits no code for them, but files
# written before the deprecation may still carry them, and they are carried over.
DEPRECATED_FIELDS = {
    "ResizeBilinearOptions": [
        {"name": "new_height", "slot": 0, "kind": "scalar", "type": "int32", "default": 0},
        {"name": "new_width", "slot": 1, "kind": "scalar", "type": "int32", "default": 0},
    ],
    "SignatureDef": [{"name": "deprecated_tag", "slot": 3, "kind": "string"}],
}
# Plain enums whose values the tool uses.
ENUMS = ("TensorType", "BuiltinOperator")

_SCALAR_OF_FLAGS = {
    "BoolFlags": "bool", "Int8Flags": "int8", "Uint8Flags": "uint8",
    "Int16Flags": "int16", "Uint16Flags": "uint16", "Int32Flags": "int32",
    "Uint32Flags": "uint32", "Int64Flags": "int64", "Uint64Flags": "uint64",
    "Float32Flags": "float32", "Float64Flags": "float64",
}
_SCALAR_OF_SLOT = {
    "Bool": "bool", "Int8": "int8", "Uint8": "uint8", "Int16": "int16",
    "Uint16": "uint16", "Int32": "int32", "Uint32": "uint32", "Int64": "int64",
    "Uint64": "uint64", "Float32": "float32", "Float64": "float64",
}


def snake_case(name: str) -> str:
    """``builtinOptions2Type`` -> ``builtin_options_2_type`` (schema.fbs spelling)."""
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    name = re.sub(r"(?<=[A-Za-z])([0-9]+)", r"_\1", name)
    return name.lower()


def _package_dir() -> Path:
    spec = importlib.util.find_spec("tflite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the 'tflite' package is not installed: pip install tflite")
    return Path(list(spec.submodule_search_locations)[0])


def _accessor_kind(body: str, table: str, field: str) -> Dict[str, Any]:
    """Classify an offset field from the source of its accessor method."""
    imported = re.search(r"from tflite\.(\w+) import", body)
    if "self._tab.Union(" in body:
        union = UNION_FIELDS.get((table, field))
        if union is None:
            raise SystemExit(f"{table}.{field} is a union this script does not know: add it to UNION_FIELDS")
        return {"kind": "union", "union": union}
    if "self._tab.Vector(o)" in body:
        if "self._tab.Indirect(x)" in body and imported:
            return {"kind": "vector_table", "table": imported.group(1)}
        if "self._tab.String(a" in body:
            return {"kind": "vector_string"}
        flags = re.search(r"number_types\.(\w+Flags), a \+", body)
        if flags:
            return {"kind": "vector_scalar", "type": _SCALAR_OF_FLAGS[flags.group(1)]}
        raise SystemExit(f"cannot classify vector field {table}.{field}")
    if "self._tab.String(o" in body:
        return {"kind": "string"}
    if "self._tab.Indirect(o" in body and imported:
        return {"kind": "table", "table": imported.group(1)}
    raise SystemExit(f"cannot classify field {table}.{field}")


def _parse_module(path: Path) -> Optional[Dict[str, Any]]:
    source = path.read_text()
    tree = ast.parse(source)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    if len(classes) != 1:
        return None
    cls = classes[0]
    name = cls.name
    start = re.search(r"builder\.StartObject\((\d+)\)", source)
    if start is None:
        # An enum (or union enum): a class of integer constants.
        values = {}
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant):
                values[stmt.targets[0].id] = stmt.value.value  # type: ignore[attr-defined]
        return {"enum": name, "values": values}
    accessors = {
        f.name: ast.get_source_segment(source, f) or ""
        for f in cls.body if isinstance(f, ast.FunctionDef)
    }
    fields: List[Dict[str, Any]] = []
    adder = re.compile(
        rf"^def {name}Add(\w+)\(builder, (\w+)\):\n\s+builder\.Prepend(\w+?)Slot\((\d+), (?:.+), ([^,()]+)\)$",
        re.M,
    )
    for method, param, slot_kind, slot, default in adder.findall(source):
        field = snake_case(param)
        entry: Dict[str, Any] = {"name": field, "slot": int(slot)}
        if slot_kind == "UOffsetTRelative":
            entry.update(_accessor_kind(accessors[method], name, field))
        else:
            entry["kind"] = "scalar"
            entry["type"] = _SCALAR_OF_SLOT[slot_kind]
            entry["default"] = ast.literal_eval(default)
        fields.append(entry)
    for extra in DEPRECATED_FIELDS.get(name, []):
        if any(f["slot"] == extra["slot"] for f in fields):
            raise SystemExit(f"{name} slot {extra['slot']} is no longer deprecated: update DEPRECATED_FIELDS")
        fields.append(dict(extra, deprecated=True))
    fields.sort(key=lambda f: f["slot"])
    return {"table": name, "slots": int(start.group(1)), "fields": fields}


def build_record() -> Dict[str, Any]:
    """The schema record of the installed ``tflite`` package."""
    tables: Dict[str, Any] = {}
    enums: Dict[str, Dict[str, int]] = {}
    for path in sorted(_package_dir().glob("*.py")):
        if path.name == "__init__.py":
            continue
        parsed = _parse_module(path)
        if parsed is None:
            continue
        if "table" in parsed:
            tables[parsed["table"]] = {"slots": parsed["slots"], "fields": parsed["fields"]}
        else:
            enums[parsed["enum"]] = parsed["values"]
    unions = {}
    for union in sorted(set(UNION_FIELDS.values())):
        members = {str(v): k for k, v in enums[union].items() if v != 0}
        missing = [t for t in members.values() if t not in tables]
        if missing:
            raise SystemExit(f"union {union} names tables that were not found: {missing}")
        unions[union] = members
    return {
        "tflite_package_version": importlib.metadata.version("tflite"),
        "file_identifier": "TFL3",
        "root_table": "Model",
        "tables": tables,
        "unions": unions,
        "enums": {name: enums[name] for name in ENUMS},
    }


def build_conversion_record() -> Dict[str, Any]:
    """The record of conversion_metadata.fbs, in the form of the main record."""
    tables = {}
    for name, fields in CONVERSION_METADATA_TABLES.items():
        entries = []
        for slot, (field, kind, type_or_table, default) in enumerate(fields):
            entry: Dict[str, Any] = {"name": field, "slot": slot, "kind": kind}
            if kind in ("scalar", "vector_scalar"):
                entry["type"] = type_or_table
            elif kind in ("table", "vector_table"):
                entry["table"] = type_or_table
            if kind == "scalar":
                entry["default"] = default
            entries.append(entry)
        tables[name] = {"slots": len(fields), "fields": entries}
    return {"source": "conversion_metadata.fbs (with Environment.model_hash)", "file_identifier": "",
            "root_table": "ConversionMetadata", "tables": tables, "unions": {}, "enums": CONVERSION_METADATA_ENUMS}


def render(record: Dict[str, Any]) -> str:
    return json.dumps(record, indent=1, sort_keys=True) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    outdated = 0
    for path, record in ((RECORD, build_record()), (CONVERSION_RECORD, build_conversion_record())):
        text = render(record)
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} is out of date: run python schema/generate.py", file=sys.stderr)
                outdated = 1
            continue
        path.write_text(text)
        print(f"wrote {path}")
    return outdated


if __name__ == "__main__":
    sys.exit(main())
