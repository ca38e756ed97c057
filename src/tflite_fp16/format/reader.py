"""Read a ``.tflite`` file into a :class:`~tflite_fp16.format.model.TFLiteModel`.

The file is memory-mapped; vectors (buffer data above all) become NumPy views
into the mapping, so nothing is copied until the cast. Every offset and length
is checked against the file before it is followed (the flatbuffers package
does not), and every table against the schema record, so that a field this
tool does not know is refused by name instead of being dropped.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Union

import numpy as np

from ..errors import InvalidModelError, UnsupportedModelError
from ..schema import NUMPY_DTYPES, SCALAR_FORMATS, SCHEMA, FieldSpec, Schema, TableSpec
from ..text import quote
from .model import Table, TFLiteModel, detail_references

__all__ = ["identify", "open_model", "parse_model", "parse_table", "read_model"]

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_SIZES = {name: size for name, (_, size) in SCALAR_FORMATS.items()}
_CODES = {name: fmt[1] for name, (fmt, _) in SCALAR_FORMATS.items()}
PathLike = Union[str, "os.PathLike[str]"]


_VECTORS: dict[tuple[int, str], struct.Struct] = {}
_STRING_FIELD = FieldSpec(name="item", slot=0, kind="string")


class _Layout:
    """The fields a vtable declares for one table type, decoded once per vtable."""

    __slots__ = ("fields", "inline_size", "packer", "unions", "wide")

    def __init__(
        self,
        inline_size: int,
        packer: struct.Struct,
        fields: list[tuple[FieldSpec, int]],
        unions: list[tuple[FieldSpec, int]],
        wide: tuple[int, ...] = (),
    ) -> None:
        self.inline_size = inline_size
        self.packer = packer  # every non-union field, in offset order (references as uint32)
        self.fields = fields  # (field, offset in table) in the packer's order
        self.unions = unions
        self.wide = wide  # offsets of 8-byte fields, which must be 8-byte aligned in the file


MAX_TABLES = 1_000_000  # LiteRT's flatbuffer verifier stops here, counting a shared table at every use
_MAX_OFFSET = 1 << 31  # uoffsets are unsigned, but the verifier refuses those that wrap as signed


def expansion_limit(size: int) -> int:
    """How many objects and elements a file of ``size`` bytes may expand to through shared
    references. An unshared model uses at most about one unit per byte (a table is at least
    4 bytes, an element of a vector of integers 4, a character of a string 1, a vector of bytes
    counts once); real writers share only vtables (free) and, rarely, strings."""
    return 200_000 + 2 * size


class _Parser:
    """Walks one flatbuffer, bounds-checking everything it follows as LiteRT's verifier does.

    Every object is read once: a table, vector or string that several references share is
    the same Python object wherever it is used (so the writer can share it again). Each
    further use counts the object's expanded size (tables, vectors, their elements, string
    bytes) against :func:`expansion_limit`, and its tables against :data:`MAX_TABLES`, so a
    file that points many times at the same large object is refused before anything
    downstream pays for its expanded size. (What is read for the first time is bounded by
    the file's size and costs no bookkeeping.)
    """

    def __init__(self, data: Any, size: int, memoize: bool = True, schema: Schema = SCHEMA) -> None:
        self.data = data
        self.size = size
        self.schema = schema
        # Without memoization (the fast first attempt, see parse_model), every object read is
        # recorded by position only, and the bytes it covers are summed: the objects of a file
        # that shares none do not overlap, so covering more bytes than the file holds means
        # sharing, and ends the attempt early.
        self.memoize = memoize
        self.positions: list[int] = []
        self.covered = 0
        self.end = 0  # one past the last byte any object of the flatbuffer uses
        self.layouts: dict[tuple[int, str], _Layout] = {}
        # position -> (type, object) of every table, vector and string read
        self.tables_at: dict[int, tuple[str, Any]] = {}
        self.vectors_at: dict[int, tuple[Any, Any]] = {}
        self.sizes: dict[int, tuple[int, int]] = {}  # id(object) -> its expanded (units, tables)
        self.shared = False
        self.units = 0  # units of expansion: the expanded sizes of the objects used again
        self.tables = 0  # tables read, plus those of the tables used again
        self.unit_limit = expansion_limit(size)
        self.root: Table | None = None

    def _reuse(self, value: Any) -> None:
        """Charge the expanded size of an object used once more."""
        self.shared = True
        units, tables = _expanded(value, self.sizes)
        self._charge(units, tables)

    def _charge(self, units: int, tables: int) -> None:
        self.units += units
        self.tables += tables
        if self.tables > MAX_TABLES:
            raise InvalidModelError(
                f"the model has more than {MAX_TABLES:,} tables (counting a shared table at every use), "
                f"more than LiteRT's verifier accepts"
            )
        if self.units > self.unit_limit:
            raise InvalidModelError(
                f"the model's object graph expands beyond {self.unit_limit:,} objects through shared references "
                f"(a file of {self.size:,} bytes); refusing to process it"
            )

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
        if pos % 4:
            raise InvalidModelError(f"{what}: offset at {pos} is not 4-byte aligned")
        value: int = _U32.unpack_from(self.data, pos)[0]
        self._check_offset(value, pos, what)
        return pos + value

    @staticmethod
    def _check_offset(value: int, pos: int, what: str) -> None:
        if value == 0 or value >= _MAX_OFFSET:
            raise InvalidModelError(f"{what}: invalid offset {value} at {pos} (zero, or beyond 2 GiB)")

    def _layout(self, vtable: int, spec: TableSpec, where: str) -> _Layout:
        self._span(vtable, 4, f"vtable of {spec.name} ({where})")
        if vtable % 2:
            raise InvalidModelError(f"vtable of {spec.name} ({where}) at offset {vtable} is not 2-byte aligned")
        vt_size, inline_size = struct.unpack_from("<HH", self.data, vtable)
        if vt_size < 4 or vt_size % 2:
            raise InvalidModelError(f"vtable of {spec.name} ({where}) at offset {vtable} has invalid size {vt_size}")
        self._span(vtable, vt_size, f"vtable of {spec.name} ({where})")
        slot_count = (vt_size - 4) // 2
        offsets = struct.unpack_from(f"<{slot_count}H", self.data, vtable + 4)
        fields: list[tuple[FieldSpec, int]] = []
        unions: list[tuple[FieldSpec, int]] = []
        wide: list[int] = []
        for slot, offset in enumerate(offsets):
            if offset == 0:
                continue
            field = spec.by_slot.get(slot)
            if field is None:
                raise UnsupportedModelError(
                    f"{spec.name} ({where}) has a field in vtable slot {slot} that the supported "
                    f"TFLite schema ({self.schema.source}; {spec.slots} fields in "
                    f"{spec.name}) does not define; the model was written with a newer schema. "
                    f"Refusing rather than dropping the field: update tflite-fp16."
                )
            size = _SIZES[field.type] if field.kind == "scalar" else 4  # type: ignore[index]
            if offset < 4 or offset + size > inline_size:
                raise InvalidModelError(
                    f"{spec.name}.{field.name} ({where}) at table offset {offset} lies outside its table"
                )
            if offset % min(size, 4):
                raise InvalidModelError(
                    f"{spec.name}.{field.name} ({where}) at table offset {offset} is not aligned to its size"
                )
            if size == 8:
                wide.append(offset)
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
        return _Layout(inline_size, struct.Struct("".join(fmt)), fields, unions, tuple(wide))

    def table(self, pos: int, spec: TableSpec, where: str) -> Table:
        """The table of type ``spec`` at ``pos``; ``where`` names its place in the model for errors."""
        if self.memoize:
            known = self.tables_at.get(pos)
            if known is not None and known[0] == spec.name:
                self._reuse(known[1])
                return known[1]  # type: ignore[no-any-return]
        else:
            known = None
            self.positions.append(pos)
        self.tables += 1
        data = self.data
        if pos < 0 or pos + 4 > self.size:
            self._span(pos, 4, f"{spec.name} table ({where})")
        if pos % 4:
            raise InvalidModelError(f"{spec.name} table ({where}) at offset {pos} is not 4-byte aligned")
        vtable = pos - _I32.unpack_from(data, pos)[0]
        layout_key = (vtable, spec.name)
        layout = self.layouts.get(layout_key)
        if layout is None:
            layout = self.layouts[layout_key] = self._layout(vtable, spec, where)
        end = pos + layout.inline_size
        if end > self.size:
            self._span(pos, layout.inline_size, f"{spec.name} table ({where})")
        if not self.memoize:
            self.covered += layout.inline_size
            if self.covered > self.size:
                raise _Shared
        if end > self.end:
            self.end = end
        for offset in layout.wide:
            if (pos + offset) % 8:
                raise InvalidModelError(
                    f"a 64-bit field of {spec.name} ({where}) at offset {pos + offset} is not 8-byte aligned"
                )
        fields: dict[str, Any] = {}
        values = layout.packer.unpack_from(data, pos)
        for (field, offset), value in zip(layout.fields, values):
            if field.kind == "scalar":
                fields[field.name] = value
            else:
                if value == 0 or value >= _MAX_OFFSET:
                    self._check_offset(value, pos + offset, f"{where}.{field.name}")
                fields[field.name] = self._reference(pos + offset + value, field, where)
        for field, offset in layout.unions:
            member_type = fields.get(field.name + "_type", 0)
            if member_type == 0:
                continue  # a value under type NONE: LiteRT ignores it, and it is not carried over
            member = self.schema.unions[field.union].get(member_type)  # type: ignore[index]
            if member is None:
                raise UnsupportedModelError(
                    f"{spec.name}.{field.name} ({where}) has union type {member_type}, which the supported "
                    f"TFLite schema ({self.schema.source}) does not define for {field.union}"
                )
            target = self._uoffset(pos + offset, where)
            fields[field.name] = self.table(target, self.schema.tables[member], f"{where}.{field.name}")
        result = Table(spec.name, fields)
        if known is None and self.memoize:
            self.tables_at[pos] = (spec.name, result)
        return result

    def _reference(self, target: int, field: FieldSpec, where: str) -> Any:
        """The object a reference field points to (at ``target``)."""
        kind = field.kind
        if kind == "table":
            return self.table(target, self.schema.tables[field.table], f"{where}.{field.name}")  # type: ignore[index]
        key = field.type or field.table
        if self.memoize:
            known = self.vectors_at.get(target)
            if known is not None and known[0] == key:
                self._reuse(known[1])
                return known[1]
        else:
            known = None
            self.positions.append(target)
        data = self.data
        if target < 0 or target + 4 > self.size:
            self._span(target, 4, f"{where}.{field.name}")
        if target % 4:
            raise InvalidModelError(f"{where}.{field.name}: vector or string at offset {target} is not 4-byte aligned")
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
        if not self.memoize:
            self.covered += end - target
            if self.covered > self.size:
                raise _Shared
        if kind == "string":
            if data[end - 1] != 0:
                raise InvalidModelError(f"{where}.{field.name}: the string at offset {target} has no terminating zero")
            value: Any = bytes(data[start : end - 1])
        elif kind == "vector_scalar":
            if _SIZES[field.type] == 1:  # type: ignore[index]
                # bytes (buffer data, custom options): a zero-copy view, shared wherever it is used
                value = np.frombuffer(data, NUMPY_DTYPES[field.type], length, start)  # type: ignore[index]
            else:
                vector_key = (length, field.type or "")
                unpacker = _VECTORS.get(vector_key)
                if unpacker is None:
                    unpacker = struct.Struct(f"<{length}{_CODES[field.type]}")  # type: ignore[index]
                    if length <= 64:  # shapes, operator inputs: a few lengths, many times
                        _VECTORS[vector_key] = unpacker
                value = unpacker.unpack_from(data, start)
        else:
            items = struct.unpack_from(f"<{length}I", data, start)
            name = f"{where}.{field.name}"
            for i, item in enumerate(items):
                if item == 0 or item >= _MAX_OFFSET:
                    self._check_offset(item, start + 4 * i, name)
            if kind == "vector_table":
                spec = self.schema.tables[field.table]  # type: ignore[index]
                table = self.table
                value = tuple([table(start + 4 * i + item, spec, name) for i, item in enumerate(items)])
            elif kind == "vector_string":
                string = _STRING_FIELD
                value = tuple([self._reference(start + 4 * i + item, string, name) for i, item in enumerate(items)])
            else:
                raise AssertionError(f"unknown field kind {kind}")
        if known is None and self.memoize:
            self.vectors_at[target] = (key, value)
        return value


class _Shared(Exception):
    """Raised by a parser without memoization when the file shares objects."""


def _expanded(value: Any, sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(units, tables) of ``value`` with every shared part counted at every use: a table or a
    vector counts 1, plus its elements (a vector of bytes counts 1), plus a string's bytes.
    Cached by identity in ``sizes``, so each distinct object is walked once."""
    known = sizes.get(id(value))
    if known is not None:
        return known
    if isinstance(value, Table):
        units, tables = 1, 1
        for item in value.fields.values():
            if isinstance(item, (Table, tuple, bytes, np.ndarray)):
                u, t = _expanded(item, sizes)
                units += u
                tables += t
    elif isinstance(value, tuple):
        units, tables = 1 + len(value), 0
        for item in value:
            if isinstance(item, (Table, bytes)):
                u, t = _expanded(item, sizes)
                units += u
                tables += t
    elif isinstance(value, bytes):
        units, tables = 1 + len(value), 0
    else:  # a vector of bytes: a view, shared wherever it is used
        units, tables = 1, 0
    sizes[id(value)] = (units, tables)
    return units, tables


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", ""),
    (b"\xff\xd8\xff", "a JPEG image", ""),
    (b"GIF8", "a GIF image", ""),
    (b"%PDF", "a PDF document", ""),
    (b"\x1f\x8b", "a gzip-compressed file", ": decompress it first (gunzip), then convert what it holds"),
    (
        b"\x89HDF\r\n\x1a\n",
        "an HDF5 file (a Keras .h5 model?)",
        ": convert it to TFLite with TensorFlow's converter first",
    ),
    (b"\x7fELF", "an executable (ELF)", ""),
    (b"LITERTLM", "a LiteRT-LM bundle (.litertlm)", ": its TFLite models are sections inside it; extract them first"),
    (b"\x93NUMPY", "a NumPy array (.npy)", ""),
)


def identify(data: Any, name: str = "the file") -> str:
    """Why ``data`` is not a TFLite model, in words a user can act on: what it looks like (an
    image, a zip of TFLite models as MediaPipe's .task bundles are, an ONNX model, text ...)."""
    head = bytes(data[:512])
    for magic, what, advice in _SIGNATURES:
        if head.startswith(magic):
            return f"{name} is {what}, not a TFLite model{advice}"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _describe_zip(data, name)
    lowered = head.lower()
    if name.lower().rstrip("'").endswith(".onnx") or (
        head[:1] == b"\x08" and (b"onnx" in lowered or b"pytorch" in lowered)
    ):
        return f"{name} is an ONNX model, not a TFLite model: convert it to TFLite first (onnx2tf, for one)"
    try:
        text = head.decode("utf-8")
        if text and all(char.isprintable() or char in "\t\r\n" for char in text):
            return f"{name} is a text file, not a TFLite model"
    except UnicodeDecodeError:
        pass
    identifier = head[4:8]
    if len(identifier) == 4 and all(32 < byte < 127 for byte in identifier):
        return (
            f"{name} is not a TFLite model: its file identifier (bytes 4 to 8) is {identifier!r}, not "
            f"{SCHEMA.file_identifier!r} (a FlatBuffers file of another schema?)"
        )
    return f"{name} is not a TFLite model: its file identifier (bytes 4 to 8) is {identifier!r}, not {SCHEMA.file_identifier!r}"


class _ViewFile(io.RawIOBase):
    """A read-only, seekable file over a buffer (a memory-mapped file), so that ``zipfile`` reads
    the central directory without a copy of the whole file."""

    def __init__(self, data: Any) -> None:
        self.view = memoryview(data).cast("B")
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: len(self.view)}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        chunk = self.view[self.position : self.position + len(buffer)]
        memoryview(buffer).cast("B")[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def _describe_zip(data: Any, name: str) -> str:
    try:
        with zipfile.ZipFile(io.BufferedReader(_ViewFile(data))) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return f"{name} is a zip archive (a damaged one), not a TFLite model"
    models = [n for n in names if n.endswith(".tflite")]
    if models:
        shown = ", ".join(repr(n) for n in models[:3]) + (f" and {len(models) - 3} more" if len(models) > 3 else "")
        return (
            f"{name} is a zip archive holding TFLite models ({shown}), as MediaPipe's .task bundles are: unzip it "
            f"and convert the .tflite files"
        )
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        return f"{name} is a Keras model (.keras), not a TFLite model: convert it with TensorFlow's converter first"
    if names and all(n.endswith(".npy") for n in names):
        return f"{name} is a NumPy archive (.npz), not a TFLite model (arrays such as --inputs takes)"
    if any(n.endswith("data.pkl") for n in names):
        return f"{name} is a PyTorch checkpoint, not a TFLite model: export it to TFLite first (ai-edge-torch, say)"
    return f"{name} is a zip archive, not a TFLite model"


def parse_model(data: Any, name: str = "the file") -> TFLiteModel:
    """Parse a TFLite flatbuffer held in ``data`` (bytes, mmap or memoryview); ``name`` (quoted)
    stands for it in messages.

    Vectors in the result are views into ``data``, which must outlive them.
    """
    size = len(data)
    if size == 0:
        raise InvalidModelError(f"{name} is empty, not a TFLite model")
    if size < 8:
        raise InvalidModelError(f"{name} has only {size} byte{'' if size == 1 else 's'}, too short for a TFLite model")
    if bytes(data[4:8]) != SCHEMA.file_identifier:
        raise InvalidModelError(identify(data, name))
    # First without memoization (cheaper): almost no file shares objects. If it does, read
    # again, keeping each object once and charging every further use of it.
    try:
        parser = _read(data, size, memoize=False)
        if len(set(parser.positions)) != len(parser.positions):
            raise _Shared
    except _Shared:
        parser = _read(data, size, memoize=True)
    root = parser.root
    assert root is not None
    parser._charge(0, 0)  # the tables read for the first time count too
    root, end, external = _external_data(root, data, size, parser.end)
    base = int(np.frombuffer(data, np.uint8, 1).__array_interface__["data"][0])
    model = TFLiteModel(
        root=root,
        trailing=memoryview(data)[_trailing_start(data, end, size) :],
        shared=parser.shared,
        tables=parser.tables,
        external=external,
        base=base,
    )
    _check_model(model)
    return model


def parse_table(data: Any, schema: Schema) -> Table:
    """The root table of a flatbuffer of ``schema`` held in ``data`` (a metadata entry such as
    CONVERSION_METADATA), bounds-checked and budgeted like a model."""
    size = len(data)
    if size < 8:
        raise InvalidModelError(f"a {schema.root_table} flatbuffer of {size} bytes is too short")
    parser = _Parser(data, size, memoize=True, schema=schema)
    root = parser.table(parser._uoffset(0, "root table offset"), schema.tables[schema.root_table], schema.root_table)
    parser._charge(0, 0)
    return root


def _read(data: Any, size: int, memoize: bool) -> _Parser:
    parser = _Parser(data, size, memoize)
    parser.end = 8
    root_pos = parser._uoffset(0, "root table offset")
    parser.root = parser.table(root_pos, SCHEMA.tables[SCHEMA.root_table], "Model")
    return parser


PADDING_LIMIT = 32  # fewer zero bytes than this after the model are padding, not data


def _trailing_start(data: Any, end: int, size: int) -> int:
    """Where the bytes appended after the model begin. Fewer than 32 bytes, all zero, are
    padding (builders align the end; writers of buffer data add 16 bytes for XNNPACK) and
    are dropped; anything else (the zip of associated files TFLite metadata appends, for
    example) is kept whole, leading zeros included."""
    tail = size - end
    if tail < PADDING_LIMIT and not np.frombuffer(data, np.uint8, tail, end).any():
        return size
    return end


def _external_data(root: Table, data: Any, size: int, flatbuffer_end: int) -> tuple[Table, int, int]:
    """Data stored after the flatbuffer (the layout of models over 2 GB) becomes
    ordinary fields that view the same bytes: ``Buffer.offset/size`` (offset > 1)
    becomes ``Buffer.data``, and ``Operator.large_custom_options_offset/size``
    becomes ``custom_options``. The writer chooses the layout anew.

    A range must lie after the flatbuffer's own objects and inside the file; a size of 0
    means no data, wherever the offset points. Bytes between the ranges that belong to
    none must be zero (alignment padding): anything else would be dropped, so the model
    is refused. Tables and views that several references share stay shared.

    Returns the root, the end of the last byte the model uses, and how many buffers held their
    data after the flatbuffer.
    """
    ranges: list[tuple[int, int]] = []
    views: dict[tuple[int, int], np.ndarray] = {}
    replaced: dict[int, Table] = {}

    def inline(table: Table, offset_field: str, size_field: str, data_field: str, what: str) -> Table:
        known = replaced.get(id(table))
        if known is not None:
            return known
        offset, length = table.get(offset_field), table.get(size_field)
        fields = {k: v for k, v in table.fields.items() if k not in (offset_field, size_field)}
        if length:
            if data_field in table.fields:
                raise InvalidModelError(f"{what} has both {data_field} and {offset_field} ({offset})")
            if offset + length > size:
                raise InvalidModelError(
                    f"{what} says its data is at offset {offset} (size {length}), beyond the end of the file "
                    f"({size} bytes): the file is truncated or corrupt"
                )
            if offset < flatbuffer_end:
                raise InvalidModelError(
                    f"{what} says its data is at offset {offset} (size {length}), inside the flatbuffer, "
                    f"which ends at {flatbuffer_end}: the file is corrupt"
                )
            view = views.get((offset, length))
            if view is None:
                view = views[(offset, length)] = np.frombuffer(data, np.uint8, length, offset)
                ranges.append((offset, offset + length))
            fields[data_field] = view
        result = replaced[id(table)] = Table(table.name, fields)
        return result

    changes = {}
    buffers = root.tables("buffers")
    if any(buffer.get("offset") > 1 for buffer in buffers):
        changes["buffers"] = tuple(
            inline(buffer, "offset", "size", "data", f"buffer {b}") if buffer.get("offset") > 1 else buffer
            for b, buffer in enumerate(buffers)
        )
    subgraphs = list(root.tables("subgraphs"))
    rewritten: dict[int, Table] = {}
    for s, subgraph in enumerate(subgraphs):
        if id(subgraph) in rewritten:
            subgraphs[s] = rewritten[id(subgraph)]
            continue
        operators = subgraph.tables("operators")
        if any(operator.get("large_custom_options_offset") > 1 for operator in operators):
            subgraphs[s] = rewritten[id(subgraph)] = subgraph.replace(
                operators=tuple(
                    inline(
                        operator,
                        "large_custom_options_offset",
                        "large_custom_options_size",
                        "custom_options",
                        f"subgraph {s} operator {o} (custom options)",
                    )
                    if operator.get("large_custom_options_offset") > 1
                    else operator
                    for o, operator in enumerate(operators)
                )
            )
            changes["subgraphs"] = tuple(subgraphs)
    end = flatbuffer_end
    for start, stop in sorted(ranges):
        if start > end and np.frombuffer(data, np.uint8, start - end, end).any():
            raise UnsupportedModelError(
                f"{start - end} bytes at offset {end}, between the flatbuffer and the buffer data stored after it, "
                f"belong to no buffer and are not padding; refusing rather than dropping them"
            )
        end = max(end, stop)
    if changes.get("subgraphs") is not None:
        changes["subgraphs"] = tuple(subgraphs)
    external = sum(1 for table in replaced.values() if table.name == "Buffer" and "data" in table.fields)
    return (root.replace(**changes) if changes else root), end, external


# Options fields that name a subgraph (WHILE's body, IF's branches, CALL_ONCE, StableHLO regions, ...).
# Scalars (``body_subgraph_index``) and vectors (STABLEHLO_CASE's ``branch_subgraph_indices``).
_SUBGRAPH_FIELDS: dict[str, tuple[str, ...]] = {
    name: names
    for name, spec in SCHEMA.tables.items()
    if name.endswith("Options")
    for names in [
        tuple(
            f.name
            for f in spec.fields
            if (f.kind == "scalar" and (f.name.endswith("subgraph_index") or f.name == "subgraph"))
            or (f.kind == "vector_scalar" and f.name.endswith("subgraph_indices"))
        )
    ]
    if names
}


def _check_model(model: TFLiteModel) -> None:
    """Indices must point inside their lists; layouts the tool cannot carry are refused."""
    buffers = model.buffers
    n_buffers = len(buffers)
    n_codes = len(model.operator_codes)
    n_subgraphs = len(model.subgraphs)
    for m, entry in enumerate(model.root.tables("metadata")):
        if entry.get("buffer") >= n_buffers:
            raise InvalidModelError(
                f"metadata {m} refers to buffer {entry.get('buffer')}, but the model has {n_buffers} buffers"
            )
    for index in model.root.ints("metadata_buffer"):
        if not 0 <= index < n_buffers:
            raise InvalidModelError(
                f"Model.metadata_buffer refers to buffer {index}, but the model has {n_buffers} buffers"
            )
    for s, subgraph in enumerate(model.subgraphs):
        tensors = subgraph.tables("tensors")
        n_tensors = len(tensors)
        for t, tensor in enumerate(tensors):
            if tensor.get("buffer") >= n_buffers:
                raise InvalidModelError(
                    f"subgraph {s} tensor {t} refers to buffer {tensor.get('buffer')}, but the model has {n_buffers} buffers"
                )
            for field, index in detail_references(tensor) if "quantization" in tensor.fields else ():
                if not 0 <= index < n_tensors:
                    raise InvalidModelError(
                        f"subgraph {s} tensor {t}: its quantization's {field} refers to tensor {index}, "
                        f"but the subgraph has {n_tensors} tensors"
                    )
        _check_tensor_indices(subgraph.ints("inputs"), n_tensors, f"subgraph {s} inputs", s, optional=False)
        _check_tensor_indices(subgraph.ints("outputs"), n_tensors, f"subgraph {s} outputs", s, optional=False)
        for o, operator in enumerate(subgraph.tables("operators")):
            if operator.get("opcode_index") >= n_codes:
                raise InvalidModelError(
                    f"subgraph {s} operator {o} uses operator code {operator.get('opcode_index')}, but the model has {n_codes}"
                )
            for name in ("inputs", "outputs", "intermediates"):
                _check_tensor_indices(
                    operator.ints(name), n_tensors, f"subgraph {s} operator {o} {name}", s, optional=True
                )
            for name in ("builtin_options", "builtin_options_2"):
                options = operator.fields.get(name)
                if options is None:
                    continue
                for field in _SUBGRAPH_FIELDS.get(options.name, ()):
                    indices = options.ints(field) if field.endswith("indices") else [options.get(field)]
                    for index in indices:
                        if not 0 <= index < n_subgraphs:
                            raise InvalidModelError(
                                f"subgraph {s} operator {o}: {options.name}.{field} refers to subgraph {index}, "
                                f"but the model has {n_subgraphs}"
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

    >>> with open_model("examples/small_cnn.tflite") as model:
    ...     len(model.subgraphs), len(model.subgraphs[0].tables("tensors"))
    (1, 20)
    """
    name = quote(os.fspath(path))
    try:
        handle = open(path, "rb")
    except IsADirectoryError:
        raise InvalidModelError(f"{name} is a directory, not a TFLite model") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise InvalidModelError(f"{name} is empty, not a TFLite model")
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield parse_model(mapping, name)
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
