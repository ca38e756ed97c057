"""Serialize a :class:`~tflite_fp16.format.model.TFLiteModel` to a ``.tflite`` file.

Order of the output file:

1. the flatbuffer tables, strings and small vectors, laid out front to back
   (root first, every object after the one that refers to it, so every
   offset points forward as flatbuffers require), vtables shared, padded to
   a multiple of 16 bytes;
2. the data of every non-empty buffer, in buffer order, each starting at a
   16-byte aligned file offset (schema.fbs declares ``force_align: 16``).
   In the normal layout each is a flatbuffer vector that ``Buffer.data``
   points to; in the offset layout (for models over 2 GB, where a flatbuffer
   cannot reach) it is raw bytes that ``Buffer.offset``/``Buffer.size``
   locate. Then 16 zero bytes (XNNPACK may read a little past a weight), and
   padding to 16;
3. the input's trailing bytes (for example the zip of associated files that
   TFLite metadata appends), unchanged.

Part 2 is written straight from the arrays (views of the input); data made
as it is written (a :class:`DeferredData`: the conversion's float16 casts, an
entry that depends on the output's layout) is asked for its chunks in turn, so
a converted model is never in memory at once. The file is written to a
temporary file in the target directory and renamed over the target only when
complete.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import lru_cache
from typing import (
    Any,
    BinaryIO,
    NamedTuple,
    Protocol,
    Union,
    runtime_checkable,
)

import numpy as np

from ..errors import RewriteError
from ..schema import NUMPY_DTYPES, SCALAR_FORMATS, SCHEMA, TABLES
from ..work import thread_pool
from .model import Table, TFLiteModel
from .paths import OutputTarget, atomic_write, check_output

__all__ = [
    "FLATBUFFER_LIMIT",
    "LAYOUTS",
    "DeferredData",
    "WriteContext",
    "copy_file",
    "planned_size",
    "serialize",
    "serialize_table",
    "to_bytes",
    "write_model",
]

ALIGNMENT = 16
TAIL_PADDING = 16
FLATBUFFER_LIMIT = 2**31 - 1  # the largest flatbuffer (offsets are signed 32-bit)
LAYOUTS = ("auto", "normal", "offset")
_GROUP_BYTES = 1 << 23  # bytes of deferred data prepared at once: bounds what is held before it is written
_PLACEHOLDER_OFFSET = 2  # any value > 1 keeps Buffer.offset present until patched
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_CODES = {name: fmt[1] for name, (fmt, _) in SCALAR_FORMATS.items()}
_SIZES = {name: size for name, (_, size) in SCALAR_FORMATS.items()}
_ZEROS = bytes(16)
_COALESCE_BYTES = 1 << 16  # writes smaller than this are gathered into one


def _scalar_vector_writer(scalar_type: str) -> Callable[[bytearray, Any], int]:
    """A writer of vectors of ``scalar_type`` (shapes, operator inputs: many small ones): the
    length, then the values, aligned; returns where the vector starts."""
    size = _SIZES[scalar_type]
    alignment = size if size > 4 else 4
    code = _CODES[scalar_type]
    dtype = NUMPY_DTYPES[scalar_type]
    small = [struct.Struct(f"<I{n}{code}") for n in range(65)]  # a struct per length up to 64

    def write(out: bytearray, value: Any) -> int:
        pad = -(len(out) + 4) % alignment
        if pad:
            out += _ZEROS[:pad]
        at = len(out)
        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value, dtype=dtype).reshape(-1)
            out += _U32.pack(array.size)
            out += array.tobytes()
        elif len(value) <= 64:
            out += small[len(value)].pack(len(value), *value)
        else:
            out += _U32.pack(len(value))
            out += struct.pack(f"<{len(value)}{code}", *value)
        return at

    return write


_SCALAR_VECTOR_WRITERS = {name: _scalar_vector_writer(name) for name in SCALAR_FORMATS}
_OFFSET_KINDS = ("string", "table", "vector_scalar", "vector_string", "vector_table", "union")
PathLike = Union[str, "os.PathLike[str]"]


class WriteContext(NamedTuple):
    """What deferred data may depend on: the model written, the layout chosen, and threads."""

    root: Table
    layout: str  # "normal" or "offset"
    executor: Executor


@runtime_checkable
class DeferredData(Protocol):
    """Buffer data made when it is written: ``nbytes`` is known up front (the writer lays the
    file out first); :meth:`chunks` yields the bytes in order, once, when their place comes.
    Data with ``groupable`` set is handed, a run at a time (of up to 8 MiB), to its class's
    ``prepare_group`` before its chunks are asked for: many small items made in one go."""

    nbytes: int
    groupable: bool

    def chunks(self, context: WriteContext) -> Iterator[Any]: ...

    @classmethod
    def prepare_group(cls, items: Sequence[Any]) -> None: ...


Data = np.ndarray | DeferredData


@dataclass(frozen=True)
class _Template:
    """How a table with a given set of fields is laid out (computed once per shape)."""

    vtable: bytes
    align: int
    packer: struct.Struct  # the soffset to the vtable, then every field in layout order
    layout: tuple[tuple[str, bool], ...]  # (field name, is a reference) in layout order
    references: tuple[tuple[int, str, Any], ...]  # (byte offset in the table, field name, FieldSpec)
    offsets: dict[str, int]  # byte offset in the table of each field


@lru_cache(maxsize=4096)
def _template(name: str, field_names: tuple[str, ...]) -> _Template:
    """Fields largest first (then by slot), each aligned to its size, after the 4-byte soffset."""
    spec = TABLES[name]
    if name == "Buffer" and any(spec.by_name[f].kind != "scalar" and f != "data" for f in field_names):
        raise AssertionError("Buffer has a reference field besides data: teach the writer about it")
    fields = [spec.by_name[f] for f in field_names]
    sized = sorted(
        ((4 if f.kind in _OFFSET_KINDS else _SIZES[f.type or ""], f) for f in fields), key=lambda p: (-p[0], p[1].slot)
    )
    fmt = ["<i"]
    position = 4
    offsets: dict[str, int] = {}
    layout: list[tuple[str, bool]] = []
    references: list[tuple[int, str, Any]] = []
    for size, field in sized:
        pad = -position % size
        if pad:
            fmt.append(f"{pad}x")
            position += pad
        offsets[field.name] = position
        is_reference = field.kind != "scalar"
        fmt.append("I" if is_reference else _CODES[field.type])  # type: ignore[index]
        layout.append((field.name, is_reference))
        if is_reference:
            references.append((position, field.name, field))
        position += size
    slots = max((f.slot for f in fields), default=-1) + 1
    slot_offsets = [0] * slots
    for field in fields:
        slot_offsets[field.slot] = offsets[field.name]
    vtable = struct.pack(f"<HH{slots}H", 4 + 2 * slots, position, *slot_offsets)
    align = max([4] + [size for size, _ in sized])
    return _Template(vtable, align, struct.Struct("".join(fmt)), tuple(layout), tuple(references), offsets)


_REFERENCE_WRITERS = {
    "table": "emitter.table({value})",
    "union": "emitter.table({value})",
    "string": "emitter.string({value})",
    "vector_scalar": "SCALARS[{type!r}](out, {value})",
    "vector_table": "emitter.tables({value})",
    "vector_string": "emitter.strings({value})",
}
Emit = Callable[["_Emitter", dict[str, Any]], int]
# Generated writers, by (sharing mode, table type, field order as met) (the fast lookup), and by
# (sharing mode, table type, field set) (each set compiled once). Both are bounded: a long-running
# process that rewrites models with ever new field orders or sets must not grow without end.
_EMITTERS: dict[tuple[bool, str, tuple[str, ...]], Emit] = {}
_COMPILED: dict[tuple[bool, str, tuple[str, ...]], Emit] = {}
_CACHE_LIMIT = 4096


def _emitter_for(linking: bool, name: str, field_names: tuple[str, ...]) -> Emit:
    canonical = (linking, name, tuple(sorted(field_names)))
    emit = _COMPILED.get(canonical)
    if emit is None:
        if len(_COMPILED) >= _CACHE_LIMIT:
            _COMPILED.clear()
        emit = _COMPILED[canonical] = _compile(_template(name, canonical[2]), linking)
    if len(_EMITTERS) >= _CACHE_LIMIT:
        _EMITTERS.clear()
    _EMITTERS[(linking, name, field_names)] = emit
    return emit


def _compile(template: _Template, linking: bool = False) -> Emit:
    """A function that writes one table of this template: the vtable (once), the
    table, then each referenced object, patching the table's offsets to them.
    Generated once per table shape: straight-line code is several times faster
    than interpreting the template for each of a model's many thousand tables.
    With ``linking``, each reference goes through ``emitter.link``, which may
    write a shared object later (see :class:`_SharingEmitter`)."""
    values = ", ".join("0" if is_reference else f"fields[{name!r}]" for name, is_reference in template.layout)
    lines = [
        "def emit(emitter, fields):",
        "    out = emitter.out",
        "    vtable_at = emitter.vtables.get(VTABLE)",
        "    if vtable_at is None:",
        "        if len(out) % 2:",
        "            out += ZEROS[:1]",
        "        vtable_at = emitter.vtables[VTABLE] = len(out)",
        "        out += VTABLE",
        f"    pad = -len(out) % {template.align}",
        "    if pad:",
        "        out += ZEROS[:pad]",
        "    at = len(out)",
        f"    out += PACK(at - vtable_at{', ' if values else ''}{values})",
    ]
    for offset, name, field in template.references:
        if linking:
            kind = "table" if field.kind == "union" else field.kind
            lines.append(f"    emitter.link({kind!r}, fields[{name!r}], {field.type!r}, at + {offset})")
        else:
            call = _REFERENCE_WRITERS[field.kind].format(value=f"fields[{name!r}]", type=field.type)
            lines.append(f"    U32_INTO(out, at + {offset}, {call} - at - {offset})")
    lines.append("    return at")
    namespace: dict[str, Any] = {
        "VTABLE": template.vtable,
        "PACK": template.packer.pack,
        "ZEROS": _ZEROS,
        "U32_INTO": _U32.pack_into,
        "SCALARS": _SCALAR_VECTOR_WRITERS,
    }
    exec("\n".join(lines), namespace)
    return namespace["emit"]  # type: ignore[no-any-return]


class _Emitter:
    """Lays out the tables of part 1 and the buffer data of part 2 (each distinct data
    array once, however many buffers hold it)."""

    linking = False

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.out = bytearray()
        self.vtables: dict[bytes, int] = {}
        self.region: list[tuple[int, Data]] = []  # (position in part 2, data)
        self.placed: dict[int, int] = {}  # id(data) -> its position in part 2
        self.region_end = 0
        self.patches: list[tuple[int, int]] = []  # (position in part 1, position in part 2)
        self.table_count = 0

    def _pad(self, alignment: int) -> None:
        pad = -len(self.out) % alignment
        if pad:
            self.out += _ZEROS[:pad]

    def _place_data(self, data: Data) -> int:
        """Reserve the data's place in part 2; return where it (or its length prefix) goes."""
        known = self.placed.get(id(data))
        if known is not None:
            return known
        if self.layout == "offset":
            at = self.region_end + (-self.region_end % ALIGNMENT)
            self.region_end = at + data.nbytes
        else:
            at = self.region_end + (-(self.region_end + 4) % ALIGNMENT)
            self.region_end = at + 4 + data.nbytes
        self.region.append((at, data))
        self.placed[id(data)] = at
        return at

    def table(self, table: Table) -> int:
        """Write ``table`` and everything it refers to; return its position."""
        self.table_count += 1
        fields = table.fields
        if table.name == "Buffer" and "data" in fields and fields["data"].nbytes:
            return self._buffer(fields)
        key = (self.linking, table.name, tuple(fields))
        emit = _EMITTERS.get(key)
        if emit is None:
            emit = _emitter_for(*key)
        return emit(self, fields)

    def _buffer(self, fields: dict[str, Any]) -> int:
        """A Buffer whose data goes to part 2: its reference (the data offset, or
        Buffer.offset in the offset layout) is a placeholder until :meth:`finish`."""
        data = fields["data"]
        external = self._place_data(data)
        if self.layout == "offset":
            fields = {k: v for k, v in fields.items() if k != "data"}
            fields.update(offset=_PLACEHOLDER_OFFSET, size=data.nbytes)
            reference = "offset"
        else:
            reference = "data"
        template = _template("Buffer", tuple(fields))
        out = self.out
        vtable_at = self.vtables.get(template.vtable)
        if vtable_at is None:
            self._pad(2)
            vtable_at = self.vtables[template.vtable] = len(out)
            out += template.vtable
        self._pad(template.align)
        at = len(out)
        out += template.packer.pack(at - vtable_at, *[0 if ref else fields[name] for name, ref in template.layout])
        self.patches.append((at + template.offsets[reference], external))
        return at

    def string(self, value: bytes) -> int:
        out = self.out
        pad = -len(out) % 4
        if pad:
            out += _ZEROS[:pad]
        at = len(out)
        out += _U32.pack(len(value))
        out += value
        out += b"\0"
        return at

    def vector(self, value: Any, scalar_type: str) -> int:
        return _SCALAR_VECTOR_WRITERS[scalar_type](self.out, value)

    def _offsets(self, targets_of: Callable[[Any], int], items: Any) -> int:
        """A vector of offsets to ``items``, each written (after the vector) by ``targets_of``."""
        self._pad(4)
        out = self.out
        at = len(out)
        count = len(items)
        out += _U32.pack(count)
        out += bytes(4 * count)
        targets = [targets_of(item) for item in items]
        first = at + 4
        struct.pack_into(f"<{count}I", out, first, *[t - first - 4 * i for i, t in enumerate(targets)])
        return at

    def tables(self, items: Any) -> int:
        return self._offsets(self.table, items)

    def strings(self, items: Any) -> int:
        return self._offsets(self.string, items)

    def finish(self, root: Table, identifier: bytes = SCHEMA.file_identifier) -> bytearray:
        self.out += bytes(4) + identifier
        root_at = self.table(root)
        _U32.pack_into(self.out, 0, root_at)
        self._emit_deferred()
        self._pad(ALIGNMENT)
        head = len(self.out)
        for where, at in self.patches:
            if self.layout == "offset":
                _U64.pack_into(self.out, where, head + at)
            else:
                _U32.pack_into(self.out, where, head + at - where)
        return self.out

    def _emit_deferred(self) -> None:
        """Nothing is deferred without sharing (see :class:`_SharingEmitter`)."""


_Key = tuple[int, str, str | None]


class _SharingEmitter(_Emitter):
    """The emitter for models in which some table, vector or string is used more than once:
    each such object is written once and every use points at it.

    Flatbuffer offsets only point forward, and tables are laid out front to back, so a
    shared object must come after every table that refers to it: references to shared
    objects are recorded instead of written, and the shared objects are written after the
    rest, in an order in which every referrer comes first (reverse post-order of the
    object graph), each use then patched to point at it.
    """

    linking = True

    def __init__(self, layout: str, shared: dict[_Key, tuple[str, Any, str | None]], order: list[_Key]) -> None:
        super().__init__(layout)
        self.shared = shared
        self.order = order
        self.uses: dict[_Key, list[int]] = {key: [] for key in shared}

    def link(self, kind: str, value: Any, scalar_type: str | None, where: int) -> None:
        """Point the offset at ``where`` to ``value``, writing it now unless it is shared."""
        key = (id(value), kind, scalar_type)
        uses = self.uses.get(key)
        if uses is not None:
            uses.append(where)
            return
        _U32.pack_into(self.out, where, self._write(kind, value, scalar_type) - where)

    def _write(self, kind: str, value: Any, scalar_type: str | None) -> int:
        if kind == "table":
            return self.table(value)
        if kind == "string":
            return self.string(value)
        if kind == "vector_scalar":
            return self.vector(value, scalar_type)  # type: ignore[arg-type]
        element = "table" if kind == "vector_table" else "string"
        self._pad(4)
        at = len(self.out)
        self.out += _U32.pack(len(value))
        self.out += bytes(4 * len(value))
        for i, item in enumerate(value):
            self.link(element, item, None, at + 4 + 4 * i)
        return at

    def _emit_deferred(self) -> None:
        for key in self.order:
            kind, value, scalar_type = self.shared[key]
            at = self._write(kind, value, scalar_type)
            for where in self.uses[key]:
                if at <= where:
                    raise AssertionError("a shared object was written before one of its uses")
                _U32.pack_into(self.out, where, at - where)


def _object_graph(root: Table) -> tuple[dict[_Key, tuple[str, Any, str | None]], list[_Key], int]:
    """The objects used more than once (by key: identity, kind and element type), an order
    in which every object comes after all objects that refer to it, and the number of
    tables of the expanded model (a shared table counted at every use, as LiteRT's
    verifier counts). Linear in the number of distinct objects and references."""
    uses: dict[_Key, int] = {}
    objects: dict[_Key, tuple[str, Any, str | None]] = {}
    children: dict[_Key, list[_Key]] = {}
    postorder: list[_Key] = []
    tables_below: dict[_Key, int] = {}

    def visit(kind: str, value: Any, scalar_type: str | None) -> _Key:
        key = (id(value), kind, scalar_type)
        if key in uses:
            uses[key] += 1
            return key
        uses[key] = 1
        objects[key] = (kind, value, scalar_type)
        below: list[_Key] = []
        if kind == "table":
            spec = TABLES[value.name]
            for name, item in value.fields.items():
                field = spec.by_name[name]
                if field.kind == "scalar" or (value.name == "Buffer" and name == "data"):
                    continue
                below.append(visit("table" if field.kind == "union" else field.kind, item, field.type))
        elif kind in ("vector_table", "vector_string"):
            element = "table" if kind == "vector_table" else "string"
            below = [visit(element, item, None) for item in value]
        children[key] = below
        postorder.append(key)
        tables_below[key] = (1 if kind == "table" else 0) + sum(tables_below[k] for k in below)
        return key

    root_key = visit("table", root, None)
    shared = {key: objects[key] for key, count in uses.items() if count > 1}
    order = [key for key in reversed(postorder) if key in shared]
    return shared, order, tables_below[root_key]


MAX_TABLES = 1_000_000  # LiteRT's verifier refuses a flatbuffer with more (a shared table counted at every use)


def _layout_for(model: TFLiteModel, layout: str) -> tuple[bytearray, list[tuple[int, Data]], int, str]:
    """Lay the model out in memory (part 1 and the places of part 2), checking it against
    the limits LiteRT's verifier enforces, before anything is written."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if model.shared:
        shared, order, tables = _object_graph(model.root)
        check_table_limit(tables)
        make: Callable[[str], _Emitter] = lambda chosen: _SharingEmitter(chosen, shared, order)  # noqa: E731
    else:
        make = _Emitter
    emitter = make("normal" if layout == "auto" else layout)
    head = emitter.finish(model.root)
    if not model.shared:
        check_table_limit(emitter.table_count)
    if emitter.layout == "normal" and len(head) + emitter.region_end > FLATBUFFER_LIMIT:
        if layout == "normal":
            raise RewriteError(
                f"the output would be {len(head) + emitter.region_end:,} bytes, more than a flatbuffer can hold "
                f"({FLATBUFFER_LIMIT:,}); use the offset layout (layout='offset' or --layout offset) or 'auto'"
            )
        emitter = make("offset")
        head = emitter.finish(model.root)
    if len(head) > FLATBUFFER_LIMIT:
        raise RewriteError(
            f"the output's flatbuffer (without its buffer data) would be {len(head):,} bytes, more than a "
            f"flatbuffer can hold ({FLATBUFFER_LIMIT:,})"
        )
    return head, emitter.region, emitter.region_end, emitter.layout


def planned_size(model: TFLiteModel, layout: str = "auto") -> tuple[int, str]:
    """The size of the file :func:`write_model` would write, and its layout, without writing it
    (nor making any deferred data)."""
    head, region, region_size, chosen = _layout_for(model, layout)
    tail = -region_size % ALIGNMENT + TAIL_PADDING if region else 0
    return len(head) + region_size + tail + len(memoryview(model.trailing).cast("B")), chosen


def serialize_table(root: Table) -> bytes:
    """A flatbuffer holding ``root`` and what it refers to, without a file identifier (for a
    metadata entry such as CONVERSION_METADATA); no buffer data."""
    emitter = _Emitter("normal")
    out = emitter.finish(root, identifier=b"")
    if emitter.region:
        raise AssertionError("serialize_table writes tables only, not buffer data")
    return bytes(out)


def check_table_limit(count: int, at_least: bool = False) -> None:
    """Refuse an output of more tables than LiteRT's verifier accepts (``count``, or at least ``count``)."""
    if count > MAX_TABLES:
        raise RewriteError(
            f"the output would have {'at least ' if at_least else ''}{count:,} tables, more than LiteRT's verifier accepts ({MAX_TABLES:,}): "
            f"every converted tensor adds a DEQUANTIZE operator and a tensor. Keep some constants float32 "
            f"(min_elements / --min-elements, keep / --keep) to stay below the limit"
        )


class _Coalescing:
    """Small writes gathered into one (a model of many small constants would otherwise make a
    few system calls per constant); large ones pass straight through."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.pending = bytearray()

    def write(self, data: Any) -> None:
        if len(data) >= _COALESCE_BYTES:
            self.flush()
            self.handle.write(data)
            return
        self.pending += data
        if len(self.pending) >= _COALESCE_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.handle.write(self.pending)
            self.pending = bytearray()


def _write_parts(handle: BinaryIO, model: TFLiteModel, layout: str) -> tuple[int, str]:
    head, region, region_size, chosen = _layout_for(model, layout)
    groupable = [data for _, data in region if not isinstance(data, np.ndarray) and data.groupable]
    next_group = 0  # groupable items before this index are prepared already
    handle.write(head)
    out = _Coalescing(handle)
    written = 0
    with thread_pool() as executor:
        context = WriteContext(model.root, chosen, executor)
        for at, data in region:
            if at > written:
                out.write(_ZEROS[: at - written] if at - written <= len(_ZEROS) else bytes(at - written))
            if chosen == "normal":
                out.write(_U32.pack(data.nbytes))
            if isinstance(data, np.ndarray):
                out.write(np.ascontiguousarray(data).data.cast("B"))
            else:
                if next_group < len(groupable) and data is groupable[next_group]:
                    end, total = next_group, 0
                    while end < len(groupable) and total < _GROUP_BYTES and type(groupable[end]) is type(data):
                        total += groupable[end].nbytes
                        end += 1
                    type(data).prepare_group(groupable[next_group:end])
                    next_group = end
                for chunk in data.chunks(context):
                    out.write(memoryview(chunk).cast("B"))
            written = at + (4 if chosen == "normal" else 0) + data.nbytes
    assert written == region_size
    tail = 0
    if region:
        tail = -written % ALIGNMENT + TAIL_PADDING
        out.write(bytes(tail))
    out.flush()
    trailing = memoryview(model.trailing).cast("B")
    handle.write(trailing)
    return len(head) + written + tail + len(trailing), chosen


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_model` wrote."""

    size: int
    layout: str  # "normal" or "offset"


def serialize(model: TFLiteModel, layout: str = "auto") -> tuple[bytes, str]:
    """The whole output file as bytes, and the layout chosen (for :func:`~tflite_fp16.rewrite_bytes`)."""
    import io

    stream = io.BytesIO()
    _, chosen = _write_parts(stream, model, layout)
    return stream.getvalue(), chosen


def to_bytes(model: TFLiteModel, layout: str = "auto") -> bytes:
    """The whole output file as bytes (for tests and small models)."""
    return serialize(model, layout)[0]


Check = Callable[[str], None] | None


def _target(path: PathLike | OutputTarget) -> OutputTarget:
    return path if isinstance(path, OutputTarget) else check_output(path)


def write_model(
    model: TFLiteModel, path: PathLike | OutputTarget, layout: str = "auto", before_commit: Check = None
) -> WriteResult:
    """Write ``model`` to ``path`` atomically and durably (see :mod:`tflite_fp16.format.paths`).

    ``layout``: ``"normal"`` keeps buffer data inside the flatbuffer (up to
    2 GiB), ``"offset"`` puts it after the flatbuffer (``Buffer.offset/size``),
    ``"auto"`` chooses normal whenever it fits. The file is renamed over
    ``path`` only once it is complete and ``before_commit``, if given, has
    accepted it, so a failure leaves no partial output.
    """
    size, chosen = atomic_write(_target(path), lambda handle: _write_parts(handle, model, layout), before_commit)
    return WriteResult(size, chosen)


def copy_file(source: Any, path: PathLike | OutputTarget, before_commit: Check = None) -> int:
    """Write the bytes of ``source`` (a path, or a bytes-like object) to ``path`` atomically; return the size."""

    def fill(handle: BinaryIO) -> int:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as original:
                return _copy_stream(original, handle)
        view = memoryview(source).cast("B")
        handle.write(view)
        return len(view)

    return atomic_write(_target(path), fill, before_commit)


def _copy_stream(source: BinaryIO, target: BinaryIO) -> int:
    total = 0
    while True:
        block = source.read(1 << 22)
        if not block:
            return total
        target.write(block)
        total += len(block)
