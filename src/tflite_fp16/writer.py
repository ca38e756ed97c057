"""Serialize a :class:`~tflite_fp16.model.TFLiteModel` to a ``.tflite`` file.

Order of the output file:

1. the flatbuffer proper: every table, vector and string except buffer data,
   built back to front with the flatbuffers ``Builder`` and padded to a
   multiple of 16 bytes;
2. the data of every non-empty buffer, in buffer order, each a flatbuffer
   vector whose first data byte sits at a 16-byte aligned file offset
   (schema.fbs declares ``force_align: 16``, which the Python builder ignores);
   the ``Buffer.data`` offsets of part 1 point forward into this part, so the
   whole file is one valid flatbuffer;
3. the input's trailing bytes (for example the zip of associated files that
   TFLite metadata appends), unchanged, from a 16-byte aligned offset (the
   reader counts zero padding up to there as part of the flatbuffer).

Part 2 is written straight from the arrays (views of the input, or the cast
float16 data); it is never copied into the builder. The file is written to a
temporary file in the target directory and renamed over the target only when
complete.
"""

from __future__ import annotations

import os
import struct
import tempfile
from typing import Any, Dict, List, Tuple, Union

import flatbuffers
import numpy as np

from .model import Table, TFLiteModel
from .schema import NUMPY_DTYPES, SCHEMA, FieldSpec

__all__ = ["write_model", "serialize"]

ALIGNMENT = 16
_PREPEND = {
    "bool": "PrependBoolSlot", "int8": "PrependInt8Slot", "uint8": "PrependUint8Slot",
    "int16": "PrependInt16Slot", "uint16": "PrependUint16Slot", "int32": "PrependInt32Slot",
    "uint32": "PrependUint32Slot", "int64": "PrependInt64Slot", "uint64": "PrependUint64Slot",
    "float32": "PrependFloat32Slot", "float64": "PrependFloat64Slot",
}
PathLike = Union[str, "os.PathLike[str]"]


class _Serializer:
    def __init__(self) -> None:
        self.builder = flatbuffers.Builder(1 << 16)
        # (position relative to the end of part 1, array) of each buffer's data
        self.data_region: List[Tuple[int, np.ndarray]] = []
        self.data_end = 0

    def _external_vector(self, array: np.ndarray) -> int:
        """Reserve room for a uint8 vector after the flatbuffer; return its offset
        in the builder's back-to-front terms (negative: beyond the end)."""
        length_at = self.data_end + (-(self.data_end + 4) % ALIGNMENT)
        self.data_region.append((length_at, array))
        self.data_end = length_at + 4 + array.nbytes
        return -length_at

    def table(self, table: Table) -> int:
        builder = self.builder
        spec = SCHEMA.tables[table.name]
        values = table.fields
        offsets: Dict[int, int] = {}
        for field in spec.fields:
            if field.kind != "scalar" and field.name in values:
                if table.name == "Buffer" and field.name == "data" and values["data"].nbytes:
                    offsets[field.slot] = self._external_vector(values["data"])
                else:
                    offsets[field.slot] = self.value(field, values[field.name])
        builder.StartObject(spec.slots)
        for field in spec.fields:
            if field.name not in values:
                continue
            if field.kind == "scalar":
                # default None: a field present in the input is written even
                # when it holds the default value, as it was.
                getattr(builder, _PREPEND[field.type])(field.slot, values[field.name], None)  # type: ignore[index]
            else:
                builder.PrependUOffsetTRelativeSlot(field.slot, offsets[field.slot], 0)
        return builder.EndObject()

    def value(self, field: FieldSpec, value: Any) -> int:
        builder = self.builder
        kind = field.kind
        if kind in ("table", "union"):
            return self.table(value)
        if kind == "string":
            return builder.CreateString(value)
        if kind == "vector_scalar":
            array = np.ascontiguousarray(value, dtype=NUMPY_DTYPES[field.type])  # type: ignore[index]
            return builder.CreateNumpyVector(array.reshape(-1))
        if kind == "vector_table":
            items = [self.table(t) for t in value]
        elif kind == "vector_string":
            items = [builder.CreateString(s) for s in value]
        else:
            raise AssertionError(f"unknown field kind {kind}")
        builder.StartVector(4, len(items), 4)
        for item in reversed(items):
            builder.PrependUOffsetTRelative(item)
        return builder.EndVector()

    def finish(self, root: Table) -> bytearray:
        root_offset = self.table(root)
        self.builder.Prep(ALIGNMENT, 0)  # raises minalign: part 1 ends 16-byte aligned
        self.builder.Finish(root_offset, file_identifier=SCHEMA.file_identifier)
        return self.builder.Output()


def serialize(model: TFLiteModel) -> Tuple[bytearray, List[Tuple[int, np.ndarray]], int]:
    """Part 1 of the file, the placed buffer data of part 2, and part 2's length."""
    serializer = _Serializer()
    head = serializer.finish(model.root)
    if len(head) % ALIGNMENT:
        raise AssertionError("flatbuffer head is not 16-byte aligned")
    return head, serializer.data_region, serializer.data_end


def _write_parts(handle: Any, model: TFLiteModel) -> int:
    head, region, region_size = serialize(model)
    handle.write(head)
    written = 0
    for length_at, array in region:
        handle.write(b"\0" * (length_at - written))
        handle.write(struct.pack("<I", array.nbytes))
        handle.write(memoryview(np.ascontiguousarray(array)).cast("B"))  # type: ignore[arg-type]
        written = length_at + 4 + array.nbytes
    assert written == region_size
    trailing = memoryview(model.trailing).cast("B")
    padding = -region_size % ALIGNMENT if len(trailing) else 0
    handle.write(b"\0" * padding)
    handle.write(trailing)
    return len(head) + region_size + padding + len(trailing)


def to_bytes(model: TFLiteModel) -> bytes:
    """The whole output file as bytes (for tests and small models)."""
    import io

    stream = io.BytesIO()
    _write_parts(stream, model)
    return stream.getvalue()


def write_model(model: TFLiteModel, path: PathLike) -> int:
    """Write ``model`` to ``path`` atomically; return the number of bytes written.

    The data goes to a temporary file next to ``path`` that replaces ``path``
    only once it is complete, so a failure leaves no partial output.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, temporary = tempfile.mkstemp(prefix=".tflite-fp16-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            size = _write_parts(handle, model)
        if os.path.exists(target):
            os.chmod(temporary, os.stat(target).st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return size
