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
from typing import Any, Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np

from .errors import InvalidModelError, UnsupportedModelError
from .model import Table, TFLiteModel
from .schema import NUMPY_DTYPES, SCALAR_FORMATS, SCHEMA, FieldSpec, TableSpec

__all__ = ["read_model", "open_model", "parse_model"]

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_SIZES = {name: size for name, (_, size) in SCALAR_FORMATS.items()}
_CODES = {name: fmt[1] for name, (fmt, _) in SCALAR_FORMATS.items()}
PathLike = Union[str, "os.PathLike[str]"]


_VECTORS: Dict[Tuple[int, str], struct.Struct] = {}
_STRING_FIELD = FieldSpec(name="item", slot=0, kind="string")


class _Layout:
    """The fields a vtable declares for one table type, decoded once per vtable."""

    __slots__ = ("inline_size", "packer", "fields", "unions")

    def __init__(self, inline_size: int, packer: struct.Struct, fields: List[Tuple[FieldSpec, int]], unions: List[Tuple[FieldSpec, int]]) -> None:
        self.inline_size = inline_size
        self.packer = packer  # every non-union field, in offset order (references as uint32)
        self.fields = fields  # (field, offset in table) in the packer's order
        self.unions = unions


class _Parser:
    """Walks one flatbuffer, bounds-checking everything it follows."""

    def __init__(self, data: Any, size: int) -> None:
        self.data = data
        self.size = size
        self.end = 0  # one past the last byte any object of the flatbuffer uses
        self.layouts: Dict[Tuple[int, str], _Layout] = {}

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

    def _layout(self, vtable: int, spec: TableSpec, where: str) -> _Layout:
        self._span(vtable, 4, f"vtable of {spec.name} ({where})")
        vt_size, inline_size = struct.unpack_from("<HH", self.data, vtable)
        if vt_size < 4 or vt_size % 2:
            raise InvalidModelError(f"vtable of {spec.name} ({where}) at offset {vtable} has invalid size {vt_size}")
        self._span(vtable, vt_size, f"vtable of {spec.name} ({where})")
        slot_count = (vt_size - 4) // 2
        offsets = struct.unpack_from(f"<{slot_count}H", self.data, vtable + 4)
        fields: List[Tuple[FieldSpec, int]] = []
        unions: List[Tuple[FieldSpec, int]] = []
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
            size = _SIZES[field.type] if field.kind == "scalar" else 4  # type: ignore[index]
            if offset < 4 or offset + size > inline_size:
                raise InvalidModelError(f"{spec.name}.{field.name} ({where}) at table offset {offset} lies outside its table")
            (unions if field.kind == "union" else fields).append((field, offset))
        fields.sort(key=lambda item: item[1])
        fmt = ["<"]
        position = 0
        for field, offset in fields:
            if offset < position:
                raise InvalidModelError(f"{spec.name}.{field.name} ({where}) overlaps another field")
            if offset > position:
                fmt.append(f"{offset - position}x")
            fmt.append(_CODES[field.type] if field.kind == "scalar" else "I")  # type: ignore[index]
            position = offset + (_SIZES[field.type] if field.kind == "scalar" else 4)  # type: ignore[index]
        return _Layout(inline_size, struct.Struct("".join(fmt)), fields, unions)

    def table(self, pos: int, spec: TableSpec, where: str) -> Table:
        """The table of type ``spec`` at ``pos``; ``where`` names its place in the model for errors."""
        data = self.data
        if pos < 0 or pos + 4 > self.size:
            self._span(pos, 4, f"{spec.name} table ({where})")
        vtable = pos - _I32.unpack_from(data, pos)[0]
        key = (vtable, spec.name)
        layout = self.layouts.get(key)
        if layout is None:
            layout = self.layouts[key] = self._layout(vtable, spec, where)
        end = pos + layout.inline_size
        if end > self.size:
            self._span(pos, layout.inline_size, f"{spec.name} table ({where})")
        if end > self.end:
            self.end = end
        fields: Dict[str, Any] = {}
        values = layout.packer.unpack_from(data, pos)
        for (field, offset), value in zip(layout.fields, values):
            if field.kind == "scalar":
                fields[field.name] = value
            else:
                fields[field.name] = self._reference(pos + offset + value, field, where)
        for field, offset in layout.unions:
            member_type = fields.get(field.name + "_type", 0)
            member = SCHEMA.unions[field.union].get(member_type)  # type: ignore[index]
            if member is None:
                raise UnsupportedModelError(
                    f"{spec.name}.{field.name} ({where}) has union type {member_type}, which the supported "
                    f"TFLite schema (tflite package {SCHEMA.tflite_version}) does not define for {field.union}"
                )
            target = self._uoffset(pos + offset, where)
            fields[field.name] = self.table(target, SCHEMA.tables[member], f"{where}.{field.name}")
        return Table(spec.name, fields)

    def _reference(self, target: int, field: FieldSpec, where: str) -> Any:
        """The object a reference field points to (at ``target``)."""
        kind = field.kind
        if kind == "table":
            return self.table(target, SCHEMA.tables[field.table], f"{where}.{field.name}")  # type: ignore[index]
        data = self.data
        if target < 0 or target + 4 > self.size:
            self._span(target, 4, f"{where}.{field.name}")
        length = _U32.unpack_from(data, target)[0]  # of a vector or string
        start = target + 4
        if kind == "string":
            end = start + length + 1  # with the terminating zero
        elif kind == "vector_scalar":
            end = start + length * _SIZES[field.type]  # type: ignore[index]
        else:
            end = start + length * 4
        if end > self.size:
            self._span(start, end - start, f"{where}.{field.name}")
        if end > self.end:
            self.end = end
        if kind == "string":
            return bytes(data[start : end - 1])
        if kind == "vector_scalar":
            if _SIZES[field.type] == 1:  # type: ignore[index]
                # bytes (buffer data, custom options): a zero-copy view
                return np.frombuffer(data, NUMPY_DTYPES[field.type], length, start)  # type: ignore[index]
            key = (length, field.type)
            unpacker = _VECTORS.get(key)
            if unpacker is None:
                unpacker = struct.Struct(f"<{length}{_CODES[field.type]}")  # type: ignore[index]
                if length <= 64:  # shapes, operator inputs: a few lengths, many times
                    _VECTORS[key] = unpacker
            return unpacker.unpack_from(data, start)
        items = struct.unpack_from(f"<{length}I", data, start)
        name = f"{where}.{field.name}"
        if kind == "vector_table":
            spec = SCHEMA.tables[field.table]  # type: ignore[index]
            table = self.table
            return tuple([table(start + 4 * i + item, spec, name) for i, item in enumerate(items)])
        if kind == "vector_string":
            string = _STRING_FIELD
            return tuple([self._reference(start + 4 * i + item, string, name) for i, item in enumerate(items)])
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
    root, end = _external_data(root, data, size, parser.end)
    # Zero padding after the last object belongs to the model: builders align
    # the end, and writers of buffer data add 16 bytes for XNNPACK.
    limit = min(size, end + (-end % 16) + 16)
    while end < limit and data[end] == 0:
        end += 1
    model = TFLiteModel(root=root, trailing=memoryview(data)[end:])
    _check_model(model)
    return model


def _inline(table: Table, offset_field: str, size_field: str, data_field: str, data: Any, size: int, what: str) -> Table:
    """``table`` with the bytes its ``offset_field``/``size_field`` locate after the
    flatbuffer moved into ``data_field``, as a bounds-checked view of the same bytes."""
    offset, length = table.get(offset_field), table.get(size_field)
    if data_field in table.fields:
        raise InvalidModelError(f"{what} has both {data_field} and {offset_field} ({offset})")
    if offset + length > size:
        raise InvalidModelError(
            f"{what} says its data is at offset {offset} (size {length}), beyond the end of the file "
            f"({size} bytes): the file is truncated or corrupt"
        )
    fields = {k: v for k, v in table.fields.items() if k not in (offset_field, size_field)}
    fields[data_field] = np.frombuffer(data, np.uint8, length, offset)
    return Table(table.name, fields)


def _external_data(root: Table, data: Any, size: int, end: int) -> Tuple[Table, int]:
    """Data stored after the flatbuffer (the layout of models over 2 GB) becomes
    ordinary fields that view the same bytes: ``Buffer.offset/size`` (offset > 1)
    becomes ``Buffer.data``, and ``Operator.large_custom_options_offset/size``
    becomes ``custom_options``. The writer chooses the layout anew.

    Returns the root and the end of the last byte the model uses.
    """
    changes = {}
    buffers = list(root.tables("buffers"))
    external = [b for b, buffer in enumerate(buffers) if buffer.get("offset") > 1]
    for b in external:
        end = max(end, buffers[b].get("offset") + buffers[b].get("size"))
        buffers[b] = _inline(buffers[b], "offset", "size", "data", data, size, f"buffer {b}")
    if external:
        changes["buffers"] = tuple(buffers)
    subgraphs = list(root.tables("subgraphs"))
    for s, subgraph in enumerate(subgraphs):
        operators = list(subgraph.tables("operators"))
        external = [o for o, operator in enumerate(operators) if operator.get("large_custom_options_offset") > 1]
        for o in external:
            end = max(end, operators[o].get("large_custom_options_offset") + operators[o].get("large_custom_options_size"))
            operators[o] = _inline(
                operators[o], "large_custom_options_offset", "large_custom_options_size", "custom_options",
                data, size, f"subgraph {s} operator {o} (custom options)",
            )
        if external:
            subgraphs[s] = subgraph.replace(operators=tuple(operators))
            changes["subgraphs"] = tuple(subgraphs)
    return (root.replace(**changes) if changes else root), end


def _check_model(model: TFLiteModel) -> None:
    """Indices must point inside their lists; layouts the tool cannot carry are refused."""
    buffers = model.buffers
    n_buffers = len(buffers)
    n_codes = len(model.operator_codes)
    n_subgraphs = len(model.subgraphs)
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
