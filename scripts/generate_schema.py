"""Write ``src/tflite_fp16/schema/tflite_schema.json``: the TFLite schema revision tflite-fp16 supports
(and ``src/tflite_fp16/schema/conversion_metadata.json``: the schema of TensorFlow's CONVERSION_METADATA entry).

The record lists every table of the schema with every field: its slot in the
vtable, what kind of value it holds (scalar, string, table, vector, union) and,
for scalars, the type and the default. The reader checks each table it parses
against this record, so that a field written by a newer schema is detected
(and the model refused) instead of being dropped on the way through.

The record is the union of the flatc-generated Python schema code of the installed
``tflite`` package (one module per table) and of ``ai_edge_litert``
(``schema_py_generated.py``, LiteRT's newest schema), read as source text (neither
package is imported). Where both define a table, they must agree field by field.

    python scripts/generate_schema.py            # rewrite the record
    python scripts/generate_schema.py --check    # exit 1 if the record is out of date
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
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "src" / "tflite_fp16" / "schema"
RECORD = SCHEMA_DIR / "tflite_schema.json"
CONVERSION_RECORD = SCHEMA_DIR / "conversion_metadata.json"

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
    "ModelType": {
        "NONE": 0,
        "TF_SAVED_MODEL": 1,
        "KERAS_MODEL": 2,
        "TF_CONCRETE_FUNCTIONS": 3,
        "TF_GRAPH_DEF": 4,
        "TF_SESSION": 5,
        "JAX": 6,
        "PYTORCH": 7,
    },
    "ModelOptimizationMode": {
        "PTQ_FLOAT16": 1001,
        "PTQ_DYNAMIC_RANGE": 1002,
        "PTQ_FULL_INTEGER": 1003,
        "PTQ_INT16": 1004,
        "QUANTIZATION_AWARE_TRAINING": 2000,
        "RANDOM_SPARSITY": 3001,
        "BLOCK_SPARSITY": 3002,
        "STRUCTURED_SPARSITY": 3003,
    },
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
    "BoolFlags": "bool",
    "Int8Flags": "int8",
    "Uint8Flags": "uint8",
    "Int16Flags": "int16",
    "Uint16Flags": "uint16",
    "Int32Flags": "int32",
    "Uint32Flags": "uint32",
    "Int64Flags": "int64",
    "Uint64Flags": "uint64",
    "Float32Flags": "float32",
    "Float64Flags": "float64",
}
_SCALAR_OF_SLOT = {
    "Bool": "bool",
    "Int8": "int8",
    "Uint8": "uint8",
    "Int16": "int16",
    "Uint16": "uint16",
    "Int32": "int32",
    "Uint32": "uint32",
    "Int64": "int64",
    "Uint64": "uint64",
    "Float32": "float32",
    "Float64": "float64",
}


def snake_case(name: str) -> str:
    """``builtinOptions2Type`` -> ``builtin_options_2_type`` (schema.fbs spelling)."""
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    name = re.sub(r"(?<=[A-Za-z])([0-9]+)", r"_\1", name)
    return name.lower()


def _package_sources() -> list[tuple[str, str, list[str]]]:
    """(distribution, version, module sources) of each package whose generated schema code is read.

    The ``tflite`` package carries one module per table or enum; ``ai_edge_litert`` one module,
    ``schema_py_generated.py``, with everything (and LiteRT's newest schema). Both are required:
    the record is their union, so that neither knows a field the record lacks.
    """
    found = []
    for distribution, package, pattern in (
        ("tflite", "tflite", "*.py"),
        ("ai-edge-litert", "ai_edge_litert", "schema_py_generated.py"),
    ):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"the {distribution!r} package is not installed: pip install {distribution}")
        directory = Path(next(iter(spec.submodule_search_locations)))
        sources = [p.read_text() for p in sorted(directory.glob(pattern)) if p.name != "__init__.py"]
        if not sources:
            raise SystemExit(f"{directory} has no generated schema module {pattern}")
        found.append((distribution, importlib.metadata.version(distribution), sources))
    return found


def _accessor_kind(body: str, table: str, field: str) -> dict[str, Any]:
    """Classify an offset field from the source of its accessor method."""
    # The tflite package imports the table class of a table field; the single-module code of
    # ai_edge_litert names it directly (``obj = QuantizationParameters()``).
    referenced = re.search(r"from tflite\.(\w+) import", body) or re.search(r"obj = (\w+)\(\)", body)
    if "self._tab.Union(" in body:
        union = UNION_FIELDS.get((table, field))
        if union is None:
            raise SystemExit(f"{table}.{field} is a union this script does not know: add it to UNION_FIELDS")
        return {"kind": "union", "union": union}
    if "self._tab.Vector(o)" in body:
        if "self._tab.Indirect(x)" in body and referenced:
            return {"kind": "vector_table", "table": referenced.group(1)}
        if "self._tab.String(a" in body:
            return {"kind": "vector_string"}
        flags = re.search(r"number_types\.(\w+Flags), a \+", body)
        if flags:
            return {"kind": "vector_scalar", "type": _SCALAR_OF_FLAGS[flags.group(1)]}
        raise SystemExit(f"cannot classify vector field {table}.{field}")
    if "self._tab.String(o" in body:
        return {"kind": "string"}
    if "self._tab.Indirect(o" in body and referenced:
        return {"kind": "table", "table": referenced.group(1)}
    raise SystemExit(f"cannot classify field {table}.{field}")


# The body of ``{Table}Add{Field}(builder, x)``: the slot of the field, its kind and its default.
_ADDER = re.compile(r"def \w+\(builder, (\w+)\):\s+builder\.Prepend(\w+?)Slot\((\d+), .+, ([^,()]+)\)")


def _parse_source(source: str) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """The tables and enums of one flatc-generated Python module (one class or many)."""
    tree = ast.parse(source)
    lines = source.splitlines()

    def text(node: ast.AST) -> str:  # ast.get_source_segment splits the whole source on every call
        return "\n".join(lines[node.lineno - 1 : node.end_lineno])  # type: ignore[attr-defined]

    # Module-level functions by name: ``TensorStart(builder)``, ``TensorAddShape(builder, shape)``, ...
    functions = {f.name: text(f) for f in tree.body if isinstance(f, ast.FunctionDef)}
    tables: dict[str, Any] = {}
    enums: dict[str, dict[str, int]] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        name = cls.name
        methods = {f.name: text(f) for f in cls.body if isinstance(f, ast.FunctionDef)}
        if not methods:
            # An enum (or union enum): a class of integer constants.
            enums[name] = {
                stmt.targets[0].id: stmt.value.value  # type: ignore[attr-defined]
                for stmt in cls.body
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
            }
            continue
        if "GetRootAs" not in methods and f"GetRootAs{name}" not in methods:
            continue  # the object API class (``TensorT``) of a table
        start = re.fullmatch(r"def \w+\(builder\):\s+builder\.StartObject\((\d+)\)", functions.get(f"{name}Start", ""))
        if start is None:
            raise SystemExit(f"table {name} has no {name}Start function")
        fields: list[dict[str, Any]] = []
        for method in methods:
            adder = _ADDER.fullmatch(functions.get(f"{name}Add{method}", ""))
            if adder is None:
                continue  # not a field (Init, ShapeLength, ...)
            param, slot_kind, slot, default = adder.groups()
            field = snake_case(param)
            entry: dict[str, Any] = {"name": field, "slot": int(slot)}
            if slot_kind == "UOffsetTRelative":
                entry.update(_accessor_kind(methods[method], name, field))
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
        tables[name] = {"slots": int(start.group(1)), "fields": fields}
    return tables, enums


def _merge_table(name: str, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """One table as two packages define it: the same fields where both have them, the union of the rest."""
    by_slot = {f["slot"]: f for f in ours["fields"]}
    for field in theirs["fields"]:
        known = by_slot.get(field["slot"])
        if known is None:
            by_slot[field["slot"]] = field
        elif known != field:
            raise SystemExit(f"the packages disagree on {name} slot {field['slot']}: {known} vs {field}")
    return {"slots": max(ours["slots"], theirs["slots"]), "fields": [by_slot[s] for s in sorted(by_slot)]}


def _merge_enum(name: str, ours: dict[str, int], theirs: dict[str, int]) -> dict[str, int]:
    merged = dict(ours)
    for key, value in theirs.items():
        if merged.setdefault(key, value) != value:
            raise SystemExit(f"the packages disagree on {name}.{key}: {merged[key]} vs {value}")
    if len(set(merged.values())) != len(merged):
        raise SystemExit(f"the packages give {name} one value under two names: {merged}")
    return merged


def build_record() -> dict[str, Any]:
    """The schema record: the union of the schemas of the installed ``tflite`` and ``ai_edge_litert``."""
    tables: dict[str, Any] = {}
    enums: dict[str, dict[str, int]] = {}
    versions = {}
    for distribution, version, sources in _package_sources():
        versions[distribution] = version
        for source in sources:
            found_tables, found_enums = _parse_source(source)
            for name, table in found_tables.items():
                tables[name] = _merge_table(name, tables[name], table) if name in tables else table
            for name, values in found_enums.items():
                enums[name] = _merge_enum(name, enums[name], values) if name in enums else values
    unions = {}
    for union in sorted(set(UNION_FIELDS.values())):
        members = {str(v): k for k, v in enums[union].items() if v != 0}
        missing = [t for t in members.values() if t not in tables]
        if missing:
            raise SystemExit(f"union {union} names tables that were not found: {missing}")
        unions[union] = members
    return {
        "packages": versions,
        "file_identifier": "TFL3",
        "root_table": "Model",
        "tables": dict(sorted(tables.items())),
        "unions": unions,
        "enums": {name: enums[name] for name in ENUMS},
    }


def build_conversion_record() -> dict[str, Any]:
    """The record of conversion_metadata.fbs, in the form of the main record."""
    tables = {}
    for name, fields in CONVERSION_METADATA_TABLES.items():
        entries = []
        for slot, (field, kind, type_or_table, default) in enumerate(fields):
            entry: dict[str, Any] = {"name": field, "slot": slot, "kind": kind}
            if kind in ("scalar", "vector_scalar"):
                entry["type"] = type_or_table
            elif kind in ("table", "vector_table"):
                entry["table"] = type_or_table
            if kind == "scalar":
                entry["default"] = default
            entries.append(entry)
        tables[name] = {"slots": len(fields), "fields": entries}
    return {
        "source": "conversion_metadata.fbs",
        "file_identifier": "",
        "root_table": "ConversionMetadata",
        "tables": tables,
        "unions": {},
        "enums": CONVERSION_METADATA_ENUMS,
    }


def _schema_part(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "packages"}


def render(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    outdated = 0
    for path, record in ((RECORD, build_record()), (CONVERSION_RECORD, build_conversion_record())):
        text = render(record)
        if args.check:
            # The schema must match; the package versions it was read from may move on without it.
            stored = json.loads(path.read_text()) if path.exists() else {}
            if _schema_part(stored) != _schema_part(json.loads(text)):
                print(f"{path} is out of date: run python scripts/generate_schema.py", file=sys.stderr)
                outdated = 1
            continue
        path.write_text(text)
        print(f"wrote {path}")
    return outdated


if __name__ == "__main__":
    sys.exit(main())
