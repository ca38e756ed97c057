"""The in-memory model: what ``reader`` produces, ``edit`` transforms and ``writer`` consumes.

A flatbuffer table is a :class:`Table`: its schema name and the fields the file
actually holds, by name. Nothing is interpreted that the rewrite does not need,
so every field, including all operator options, passes through untouched.

Values by field kind (see ``schema/tflite_schema.json``):

* scalar: ``int``, ``float`` or ``bool``
* string: ``bytes`` (names are not decoded, so non-UTF-8 bytes survive)
* vector of scalars: a 1-D ``numpy.ndarray``; read from a file it is a
  read-only view into the memory-mapped input (buffer data is never copied
  before it is cast)
* table: :class:`Table`; vector of tables: ``tuple`` of :class:`Table`
* vector of strings: ``tuple`` of ``bytes``
* union: the ``<name>_type`` scalar plus a :class:`Table` of the member type
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..schema import SCHEMA, TABLES

__all__ = [
    "BUILTIN_OPS",
    "OP_NAMES",
    "TENSOR_TYPES",
    "TYPE_NAMES",
    "TFLiteModel",
    "Table",
    "detail_references",
    "op_of",
]

TENSOR_TYPES: Mapping[str, int] = SCHEMA.enums["TensorType"]
BUILTIN_OPS: Mapping[str, int] = SCHEMA.enums["BuiltinOperator"]
FLOAT32 = TENSOR_TYPES["FLOAT32"]
FLOAT16 = TENSOR_TYPES["FLOAT16"]
OP_NAMES: Mapping[int, str] = {v: k for k, v in BUILTIN_OPS.items()}
TYPE_NAMES: Mapping[int, str] = {v: k for k, v in TENSOR_TYPES.items()}
DEQUANTIZE = BUILTIN_OPS["DEQUANTIZE"]
DENSIFY = BUILTIN_OPS["DENSIFY"]


_DEFAULTS: dict[str, dict[str, Any]] = {name: {f.name: f.default for f in spec.fields} for name, spec in TABLES.items()}


class Table:
    """One flatbuffer table: its schema type and the fields present in the file.

    Tables are not changed once made; :meth:`replace` returns a new one.
    (A plain class with slots rather than a dataclass: a model has one per
    tensor, operator and buffer, and this is the reader's and editor's hot path.)
    """

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, Any] | None = None) -> None:
        self.name = name
        self.fields: dict[str, Any] = {} if fields is None else fields

    def __repr__(self) -> str:
        return f"Table({self.name!r}, {self.fields!r})"

    def get(self, name: str) -> Any:
        """The field's value, or the schema default when the file omits it."""
        value = self.fields.get(name, _MISSING)
        return _DEFAULTS[self.name][name] if value is _MISSING else value

    def has(self, name: str) -> bool:
        return name in self.fields

    def replace(self, **changes: Any) -> Table:
        """A copy with some fields changed; a value of ``None`` removes the field."""
        known = _DEFAULTS[self.name]
        fields = dict(self.fields)
        for name, value in changes.items():
            if name not in known:
                raise KeyError(f"{self.name} has no field {name!r}")
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = value
        return Table(self.name, fields)

    def tables(self, name: str) -> tuple[Table, ...]:
        """A vector-of-tables field, empty when absent."""
        value: tuple[Table, ...] = self.fields.get(name, ())
        return value

    def ints(self, name: str) -> list[int]:
        """A vector-of-integers field as a list, empty when absent."""
        value = self.fields.get(name)
        if value is None:
            return []
        return value.tolist() if isinstance(value, np.ndarray) else list(value)


_MISSING = object()


@dataclass(frozen=True, eq=False)
class TFLiteModel:
    """A model file: the root ``Model`` table and the bytes that follow the flatbuffer.

    ``trailing`` holds whatever the file carries after the flatbuffer, such as
    the zip of associated files that TFLite metadata appends. ``shared`` is true
    when some table, vector or string is used by more than one reference (the
    same Python object then stands at each use, and the writer writes it once).
    """

    root: Table
    trailing: Any = b""  # bytes-like; a view into the input file when read
    shared: bool = False
    tables: int = 0  # tables as LiteRT's verifier counts them (a shared one at every use); 0 when not read from a file
    external: int = 0  # buffers whose data the file stores after the flatbuffer (Buffer.offset/size)
    base: int = 0  # the address of the file's first byte, when read from one (see offset_of)

    def offset_of(self, array: np.ndarray) -> int | None:
        """Where ``array`` (a view of the file read, such as buffer data) starts in the file."""
        if not self.base or not isinstance(array, np.ndarray) or array.size == 0:
            return None
        return int(array.__array_interface__["data"][0]) - self.base

    @cached_property
    def buffers(self) -> tuple[Table, ...]:
        return self.root.tables("buffers")

    @property
    def subgraphs(self) -> tuple[Table, ...]:
        return self.root.tables("subgraphs")

    @property
    def operator_codes(self) -> tuple[Table, ...]:
        return self.root.tables("operator_codes")

    def buffer_data(self, index: int) -> np.ndarray:
        """The data of buffer ``index`` as a 1-D uint8 array (empty when absent)."""
        data = self.buffers[index].fields.get("data")
        if data is None:
            return np.empty(0, np.uint8)
        if not isinstance(data, np.ndarray):  # a float16 cast still to be done
            data = data.array()
        return data.view(np.uint8) if data.dtype != np.uint8 else data


def op_of(operator_code: Table) -> int:
    """The builtin operator of an OperatorCode.

    Files from before schema 3a set only ``deprecated_builtin_code`` (and
    ``builtin_code`` then reads as 0, ADD); newer files set 127 there for
    operators above 127. The larger of the two is the operator in both cases.
    """
    return max(int(operator_code.get("builtin_code")), int(operator_code.get("deprecated_builtin_code")))


# Quantization details that name other tensors of the subgraph by index (schema 3d).
TENSOR_INDEX_DETAILS = ("BlockwiseQuantization", "MultiAxisQuantization")


def detail_references(tensor: Table) -> tuple[tuple[str, int], ...]:
    """(field, tensor index) of each tensor that ``tensor``'s blockwise or multi-axis quantization
    names (its scales and zero points; a zero point of -1 names none)."""
    quantization = tensor.fields.get("quantization")
    if quantization is None:
        return ()
    details = quantization.fields.get("details")
    if details is None or details.name not in TENSOR_INDEX_DETAILS:
        return ()
    return tuple((name, details.get(name)) for name in ("scales", "zero_points") if details.get(name) != -1)
