"""The TFLite schema revision tflite-fp16 supports, loaded from ``tflite_schema.json``.

``scripts/generate_schema.py`` writes the record from the generated schema code of the
``tflite`` and ``ai_edge_litert`` packages (their union: LiteRT's newest schema);
this module turns it into lookup tables for the reader and the writer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CONVERSION_SCHEMA", "SCALAR_FORMATS", "SCHEMA", "TABLES", "FieldSpec", "Schema", "TableSpec"]

# struct format and numpy dtype of each scalar type, little-endian.
SCALAR_FORMATS: Mapping[str, tuple[str, int]] = {
    "bool": ("<?", 1),
    "int8": ("<b", 1),
    "uint8": ("<B", 1),
    "int16": ("<h", 2),
    "uint16": ("<H", 2),
    "int32": ("<i", 4),
    "uint32": ("<I", 4),
    "int64": ("<q", 8),
    "uint64": ("<Q", 8),
    "float32": ("<f", 4),
    "float64": ("<d", 8),
}
NUMPY_DTYPES: Mapping[str, str] = {
    "bool": "?",
    "int8": "i1",
    "uint8": "u1",
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
    "int64": "<i8",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
}


@dataclass(frozen=True)
class FieldSpec:
    """One field of a table: where it sits in the vtable and what it holds."""

    name: str
    slot: int
    kind: str  # scalar | string | table | vector_scalar | vector_string | vector_table | union
    type: str | None = None  # scalar type, or element type of a vector_scalar
    table: str | None = None  # table type of a table / vector_table field
    union: str | None = None  # union name of a union field
    default: Any = None
    deprecated: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One table of the schema."""

    name: str
    slots: int
    fields: tuple[FieldSpec, ...]
    by_slot: Mapping[int, FieldSpec]
    by_name: Mapping[str, FieldSpec]


@dataclass(frozen=True)
class Schema:
    """The whole record: tables, union members and the enums the tool uses."""

    source: str  # what the record was made from, for messages: "tflite 2.18.0, ai-edge-litert 2.3.0"
    file_identifier: bytes
    root_table: str
    tables: Mapping[str, TableSpec]
    unions: Mapping[str, Mapping[int, str]]
    enums: Mapping[str, Mapping[str, int]]


def _load(path: Path) -> Schema:
    raw: dict[str, Any] = json.loads(path.read_text())
    tables = {}
    for name, table in raw["tables"].items():
        fields = tuple(FieldSpec(**f) for f in table["fields"])
        tables[name] = TableSpec(
            name=name,
            slots=table["slots"],
            fields=fields,
            by_slot={f.slot: f for f in fields},
            by_name={f.name: f for f in fields},
        )
    return Schema(
        source=", ".join(f"{name} {version}" for name, version in raw["packages"].items())
        if "packages" in raw
        else raw["source"],
        file_identifier=raw["file_identifier"].encode("ascii"),
        root_table=raw["root_table"],
        tables=tables,
        unions={u: {int(k): v for k, v in m.items()} for u, m in raw["unions"].items()},
        enums=raw["enums"],
    )


SCHEMA = _load(Path(__file__).with_name("tflite_schema.json"))
CONVERSION_SCHEMA = _load(Path(__file__).with_name("conversion_metadata.json"))
# Every table of both records, by name (their names do not collide): what the writer and Table use.
TABLES: Mapping[str, TableSpec] = {**SCHEMA.tables, **CONVERSION_SCHEMA.tables}
assert len(TABLES) == len(SCHEMA.tables) + len(CONVERSION_SCHEMA.tables), "table names collide between the records"
