"""Read a ``.tflite`` file into a :class:`~tflite_fp16.model.TFLiteModel`.

The file is memory-mapped; vectors (buffer data above all) become NumPy views
into the mapping, so nothing is copied until the cast. Every offset and length
is checked against the file before it is followed (the flatbuffers package
does not), and every table against the schema record, so that a field this
tool does not know is refused by name instead of being dropped.
"""

from __future__ import annotations

import mmap
import os
import struct
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Sequence, Union

import numpy as np

from .errors import InvalidModelError, UnsupportedModelError
from .model import Table, TFLiteModel
from .schema import NUMPY_DTYPES, SCALAR_FORMATS, SCHEMA, FieldSpec, TableSpec

__all__ = ["read_model", "open_model", "parse_model"]

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_SCALARS = {name: struct.Struct(fmt) for name, (fmt, _) in SCALAR_FORMATS.items()}
_SIZES = {name: size for name, (_, size) in SCALAR_FORMATS.items()}
PathLike = Union[str, "os.PathLike[str]"]


class _Parser:
    """Walks one flatbuffer, bounds-checking everything it follows."""

    def __init__(self, data: Any, size: int) -> None:
        self.data = data
        self.size = size
        self.end = 0  # one past the last byte any object of the flatbuffer uses

    def _span(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise InvalidModelError(
                f"{what} at offset {pos} (length {length}) lies outside the file "
                f"of {self.size} bytes: the file is truncated or corrupt"
            )
        if pos + length > self.end:
            self.end = pos + length

    def _uoffset(self, pos: int, what: str) -> int:
        self._span(pos, 4, what)
        return pos + _U32.unpack_from(self.data, pos)[0]

    def table(self, pos: int, spec: TableSpec, where: str) -> Table:
        self._span(pos, 4, f"{spec.name} table ({where})")
        vtable = pos - _I32.unpack_from(self.data, pos)[0]
        self._span(vtable, 4, f"vtable of {spec.name} ({where})")
        vt_size, inline_size = struct.unpack_from("<HH", self.data, vtable)
        if vt_size < 4 or vt_size % 2:
            raise InvalidModelError(f"vtable of {spec.name} ({where}) at offset {vtable} has invalid size {vt_size}")
        self._span(vtable, vt_size, f"vtable of {spec.name} ({where})")
        self._span(pos, inline_size, f"{spec.name} table ({where})")
        fields: Dict[str, Any] = {}
        slot_count = (vt_size - 4) // 2
        offsets = struct.unpack_from(f"<{slot_count}H", self.data, vtable + 4)
        unions: List[FieldSpec] = []
        for slot, offset in enumerate(offsets):
            if offset == 0:
                continue
            field = spec.by_slot.get(slot)
            if field is None:
                raise UnsupportedModelError(
                    f"{spec.name} ({where}) has a field in vtable slot {slot} that the supported "
                    f"TFLite schema (tflite package {SCHEMA.tflite_version}, {spec.slots} fields in "
                    f"{spec.name}) does not define; the model was written with a newer schema. "
                    f"Refusing rather than dropping the field: update tflite-fp16."
                )
            if offset < 4:
                raise InvalidModelError(f"{spec.name}.{field.name} ({where}) has field offset {offset} inside the table header")
            where_field = f"{where}.{field.name}"
            at = pos + offset
            if field.kind == "union":
                unions.append(field)
                continue
            fields[field.name] = self._value(at, field, inline_size - offset, where_field)
        for field in unions:
            member_type = fields.get(field.name + "_type", 0)
            member = SCHEMA.unions[field.union].get(member_type)  # type: ignore[index]
            if member is None:
                raise UnsupportedModelError(
                    f"{spec.name}.{field.name} ({where}) has union type {member_type}, which the supported "
                    f"TFLite schema (tflite package {SCHEMA.tflite_version}) does not define for {field.union}"
                )
            at = pos + offsets[field.slot]
            if offsets[field.slot] + 4 > inline_size:
                raise InvalidModelError(f"{spec.name}.{field.name} ({where}) lies outside its table")
            fields[field.name] = self.table(self._uoffset(at, where), SCHEMA.tables[member], f"{where}.{field.name}")
        return Table(spec.name, fields)

    def _value(self, at: int, field: FieldSpec, room: int, where: str) -> Any:
        kind = field.kind
        if kind == "scalar":
            size = _SIZES[field.type]  # type: ignore[index]
            if size > room:
                raise InvalidModelError(f"{where} at offset {at} lies outside its table")
            return _SCALARS[field.type].unpack_from(self.data, at)[0]  # type: ignore[index]
        if room < 4:
            raise InvalidModelError(f"{where} at offset {at} lies outside its table")
        target = self._uoffset(at, where)
        if kind == "table":
            return self.table(target, SCHEMA.tables[field.table], where)  # type: ignore[index]
        length = self._uoffset(target, where) - target  # a vector or string length
        if kind == "string":
            self._span(target + 4, length + 1, where)  # + the terminating zero
            return bytes(self.data[target + 4 : target + 4 + length])
        if kind == "vector_scalar":
            size = _SIZES[field.type]  # type: ignore[index]
            self._span(target + 4, length * size, where)
            return np.frombuffer(self.data, NUMPY_DTYPES[field.type], length, target + 4)  # type: ignore[index]
        self._span(target + 4, length * 4, where)
        items = [self._uoffset(target + 4 + 4 * i, where) for i in range(length)]
        if kind == "vector_table":
            spec = SCHEMA.tables[field.table]  # type: ignore[index]
            return tuple(self.table(p, spec, f"{where}[{i}]") for i, p in enumerate(items))
        if kind == "vector_string":
            out = []
            for p in items:
                n = self._uoffset(p, where) - p
                self._span(p + 4, n + 1, where)
                out.append(bytes(self.data[p + 4 : p + 4 + n]))
            return tuple(out)
        raise AssertionError(f"unknown field kind {kind}")


def parse_model(data: Any) -> TFLiteModel:
    """Parse a TFLite flatbuffer held in ``data`` (bytes, mmap or memoryview).

    Vectors in the result are views into ``data``, which must outlive them.
    """
    size = len(data)
    if size == 0:
        raise InvalidModelError("the file is empty, not a TFLite model")
    if size < 8:
        raise InvalidModelError(f"the file has only {size} bytes, too short for a TFLite model")
    identifier = bytes(data[4:8])
    if identifier != SCHEMA.file_identifier:
        raise InvalidModelError(
            f"not a TFLite model: the file identifier is {identifier!r}, expected "
            f"{SCHEMA.file_identifier!r} (is this a .tflite file?)"
        )
    parser = _Parser(data, size)
    parser.end = 8
    root_pos = parser._uoffset(0, "root table offset")
    root = parser.table(root_pos, SCHEMA.tables[SCHEMA.root_table], "Model")
    end = parser.end
    # Zero padding after the last object (builders align it) belongs to the flatbuffer.
    while end % 16 and end < size and data[end] == 0:
        end += 1
    model = TFLiteModel(root=root, trailing=memoryview(data)[end:])
    _check_model(model)
    return model


def _check_model(model: TFLiteModel) -> None:
    """Indices must point inside their lists; layouts the tool cannot carry are refused."""
    buffers = model.buffers
    n_buffers = len(buffers)
    n_codes = len(model.operator_codes)
    n_subgraphs = len(model.subgraphs)
    for b, buffer in enumerate(buffers):
        if buffer.get("offset") > 1 or buffer.get("size") > 0:
            raise UnsupportedModelError(
                f"buffer {b} keeps its data outside the flatbuffer (Buffer.offset/size, the layout "
                "TensorFlow uses for models over 2 GB); this version of tflite-fp16 does not read it yet"
            )
    for m, entry in enumerate(model.root.tables("metadata")):
        if entry.get("buffer") >= n_buffers:
            raise InvalidModelError(f"metadata {m} refers to buffer {entry.get('buffer')}, but the model has {n_buffers} buffers")
    for index in model.root.ints("metadata_buffer"):
        if not 0 <= index < n_buffers:
            raise InvalidModelError(f"Model.metadata_buffer refers to buffer {index}, but the model has {n_buffers} buffers")
    for s, subgraph in enumerate(model.subgraphs):
        tensors = subgraph.tables("tensors")
        n_tensors = len(tensors)
        for t, tensor in enumerate(tensors):
            if tensor.get("buffer") >= n_buffers:
                raise InvalidModelError(
                    f"subgraph {s} tensor {t} refers to buffer {tensor.get('buffer')}, but the model has {n_buffers} buffers"
                )
        _check_tensor_indices(subgraph.ints("inputs"), n_tensors, f"subgraph {s} inputs", s, optional=False)
        _check_tensor_indices(subgraph.ints("outputs"), n_tensors, f"subgraph {s} outputs", s, optional=False)
        for o, operator in enumerate(subgraph.tables("operators")):
            if operator.get("opcode_index") >= n_codes:
                raise InvalidModelError(
                    f"subgraph {s} operator {o} uses operator code {operator.get('opcode_index')}, but the model has {n_codes}"
                )
            for name in ("inputs", "outputs", "intermediates"):
                _check_tensor_indices(operator.ints(name), n_tensors, f"subgraph {s} operator {o} {name}", s, optional=True)
            if operator.get("large_custom_options_size") > 0:
                raise UnsupportedModelError(
                    f"subgraph {s} operator {o} keeps its custom options outside the flatbuffer "
                    "(large_custom_options_offset/size); this version of tflite-fp16 does not read them yet"
                )
    for d, signature in enumerate(model.root.tables("signature_defs")):
        s = signature.get("subgraph_index")
        if s >= n_subgraphs:
            raise InvalidModelError(f"signature {d} refers to subgraph {s}, but the model has {n_subgraphs}")
        n_tensors = len(model.subgraphs[s].tables("tensors"))
        for name in ("inputs", "outputs"):
            for entry in signature.tables(name):
                if entry.get("tensor_index") >= n_tensors:
                    raise InvalidModelError(
                        f"signature {d} {name} refers to tensor {entry.get('tensor_index')}, but subgraph {s} has {n_tensors}"
                    )


def _check_tensor_indices(values: Sequence[int], n_tensors: int, what: str, subgraph: int, optional: bool) -> None:
    for value in values:
        if not (0 <= value < n_tensors or (optional and value == -1)):
            raise InvalidModelError(f"{what} refers to tensor {value}, but subgraph {subgraph} has {n_tensors} tensors")


@contextmanager
def open_model(path: PathLike) -> Iterator[TFLiteModel]:
    """Memory-map ``path`` and parse it; the mapping lives as long as the ``with`` block.

    >>> with open_model("model.tflite") as model:    # doctest: +SKIP
    ...     print(len(model.subgraphs))
    """
    try:
        handle = open(path, "rb")
    except IsADirectoryError:
        raise InvalidModelError(f"{os.fspath(path)} is a directory, not a TFLite model") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise InvalidModelError(f"{os.fspath(path)} is empty, not a TFLite model")
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield parse_model(mapping)
    finally:
        try:
            mapping.close()
        except BufferError:
            # NumPy views of the mapping are still alive (held by the caller);
            # the mapping closes when the last of them is collected.
            pass


def read_model(path: PathLike) -> TFLiteModel:
    """Read ``path`` fully into memory and parse it (for small files and tests)."""
    with open(path, "rb") as handle:
        data = handle.read()
    return parse_model(data)
