"""What a float16 model declares about itself: the metadata entries TensorFlow writes.

* ``reduced_precision_support``: the model's statement of the precision it may
  run in. TensorFlow writes the 11 bytes ``fp16accfp32`` (float16 inference,
  float32 accumulation) into every float16 model; no terminating zero (LiteRT's
  parser, ``SetMaskFromReducedPrecisionMetadata``, refuses one). ``fp16accfp16``
  lets the XNNPACK delegate run the model in float16 arithmetic
  (``XNN_FLAG_HINT_FP16_INFERENCE``) on processors with native float16.
* ``CONVERSION_METADATA`` (``conversion_metadata.fbs``): what TensorFlow's
  converter did. A float16 rewrite adds ``PTQ_FLOAT16`` to
  ``options.model_optimization_modes`` and recomputes ``environment.model_hash``
  the way TensorFlow's ``util.get_model_hash`` does, over the output's structure.
  The hash counts buffer data lengths only for buffers whose data is a
  flatbuffer vector, so it depends on the layout the writer chooses: the entry
  is a :class:`ConversionMetadataData`, rendered when the layout is known.

The decisions are made in the plan (:func:`plan_metadata`) and applied by
``edit``; ``widen`` undoes them (:func:`without_float16`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import RewriteError
from ..format.model import Table, TFLiteModel
from ..format.reader import parse_table
from ..format.writer import serialize_table
from ..schema import CONVERSION_SCHEMA

__all__ = [
    "CONVERSION_METADATA_KEY",
    "FP16_ACCUMULATE_FP16",
    "FP16_ACCUMULATE_FP32",
    "PTQ_FLOAT16",
    "REDUCED_PRECISION_KEY",
    "ConversionMetadataData",
    "MetadataChange",
    "model_hash",
    "plan_metadata",
    "read_conversion_metadata",
]

REDUCED_PRECISION_KEY = b"reduced_precision_support"
CONVERSION_METADATA_KEY = b"CONVERSION_METADATA"
FP16_ACCUMULATE_FP32 = b"fp16accfp32"
FP16_ACCUMULATE_FP16 = b"fp16accfp16"
PTQ_FLOAT16: int = CONVERSION_SCHEMA.enums["ModelOptimizationMode"]["PTQ_FLOAT16"]
_MODE_NAMES = {v: k for k, v in CONVERSION_SCHEMA.enums["ModelOptimizationMode"].items()}

_MASK = (1 << 64) - 1
_HASH_CONSTANT = 0x9E3779B97F4A7800


class MetadataChange(NamedTuple):
    """One metadata entry the rewrite changes: its name, what happens to it (``added``,
    ``replaced``, ``raised``, ``updated``, ``left``) and its value before and after, as text."""

    name: str
    action: str
    before: str | None
    after: str | None

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON-ready data (the reports' ``metadata[]`` entries)."""
        return {"name": self.name, "action": self.action, "before": self.before, "after": self.after}


def _combine_all(items: list[int]) -> int:
    """TensorFlow's ``update_hash_with_primitive_value`` over ``items`` in turn, from 0: boost's
    hash_combine in uint64 arithmetic; a negative item counts as its two's complement, as NumPy
    casts it. (One tight loop: the hash is sequential, and this is the whole cost.)"""
    mask, constant = _MASK, _HASH_CONSTANT
    h = 0
    for item in items:
        h ^= ((item & mask) + constant + (h << 10) + (h >> 4)) & mask
    return h


def _ints(values: Any) -> list[int]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def model_hash(root: Table, layout: str = "normal") -> int:
    """TensorFlow's ``get_model_hash`` of a model as it is written in ``layout``.

    Per subgraph: the operator count and every operator's inputs and outputs; the
    tensor count and, per tensor, its buffer's data length (when the buffer has a
    ``data`` vector) and its shape; the input count and the output count. In the
    offset layout non-empty buffers have no ``data`` vector (their bytes follow the
    flatbuffer), so they do not count.
    """
    data_length: list[int | None] = []
    for buffer in root.tables("buffers"):
        data = buffer.fields.get("data")
        has_vector = data is not None and (layout == "normal" or data.nbytes == 0)
        data_length.append(int(data.nbytes) if data is not None and has_vector else None)
    n_buffers = len(data_length)
    items: list[int] = []
    append, extend = items.append, items.extend
    for subgraph in root.tables("subgraphs"):
        fields = subgraph.fields
        if "operators" in fields:
            operators = fields["operators"]
            append(len(operators))
            for operator in operators:
                values = operator.fields
                if "inputs" in values:
                    inputs = values["inputs"]  # a tuple as read (a list or an array when built)
                    extend(inputs if type(inputs) is tuple else _ints(inputs))
                if "outputs" in values:
                    outputs = values["outputs"]
                    extend(outputs if type(outputs) is tuple else _ints(outputs))
        if "tensors" in fields:
            tensors = fields["tensors"]
            append(len(tensors))
            for tensor in tensors:
                values = tensor.fields
                b = values.get("buffer", 0)
                length = data_length[b] if b < n_buffers else None
                if length is not None:
                    append(length)
                if "shape" in values:
                    shape = values["shape"]
                    extend(shape if type(shape) is tuple else _ints(shape))
        for name in ("inputs", "outputs"):
            if name in fields:
                append(len(fields[name]))
    return _combine_all(items)


class ConversionMetadataData:
    """The bytes of a CONVERSION_METADATA entry whose ``model_hash`` is that of the model it
    is written into: the writer renders it (:meth:`render`) once the layout is chosen. Its
    length does not depend on the hash (the field is always written)."""

    groupable = False

    def __init__(self, table: Table) -> None:
        environment = table.fields.get("environment", Table("Environment", {}))
        self.table = table.replace(environment=environment.replace(model_hash=0))
        self.nbytes = len(serialize_table(self.table))

    @classmethod
    def prepare_group(cls, items: Sequence[ConversionMetadataData]) -> None:
        pass

    def chunks(self, context: Any) -> Iterator[np.ndarray]:
        """The entry's bytes, with the hash of ``context.root`` written in ``context.layout``."""
        yield self.render(context.root, context.layout)

    def render(self, root: Table, layout: str) -> np.ndarray:
        environment = self.table.fields["environment"]
        table = self.table.replace(environment=environment.replace(model_hash=model_hash(root, layout)))
        data = serialize_table(table)
        assert len(data) == self.nbytes
        return np.frombuffer(data, np.uint8)

    def array(self) -> np.ndarray:
        raise RewriteError("CONVERSION_METADATA is rendered when the model is written (its hash depends on the layout)")


def _entry(model: TFLiteModel, key: bytes) -> tuple[int | None, Table | None]:
    for m, entry in enumerate(model.root.tables("metadata")):
        if entry.get("name") == key:
            return m, entry
    return None, None


def read_conversion_metadata(model: TFLiteModel) -> tuple[Table | None, str]:
    """The model's CONVERSION_METADATA table, or None and why not ('' when the entry is absent)."""
    _, entry = _entry(model, CONVERSION_METADATA_KEY)
    if entry is None:
        return None, ""
    raw = model.buffer_data(entry.get("buffer"))
    try:
        table = parse_table(np.ascontiguousarray(raw).tobytes(), CONVERSION_SCHEMA)
    except RewriteError as error:
        return None, f"CONVERSION_METADATA cannot be read ({error})"
    if table.name != "ConversionMetadata":
        return None, "CONVERSION_METADATA is not a ConversionMetadata table"
    return table, ""


def _text(raw: Any) -> str:
    return bytes(raw).decode("utf-8", "replace")


def _modes(table: Table) -> tuple[int, ...]:
    options = table.fields.get("options")
    return tuple(options.ints("model_optimization_modes")) if options is not None else ()


def describe_modes(modes: tuple[int, ...]) -> str:
    return "[" + ", ".join(_MODE_NAMES.get(m, str(m)) for m in modes) + "]"


def with_modes(table: Table, modes: tuple[int, ...]) -> Table:
    """``table`` with ``options.model_optimization_modes`` set to ``modes`` (other fields kept)."""
    options = table.fields.get("options", Table("ConversionOptions", {}))
    return table.replace(options=options.replace(model_optimization_modes=tuple(modes)))


def plan_metadata(
    model: TFLiteModel, fp16_compute: bool
) -> tuple[tuple[MetadataChange, ...], Table | None, tuple[str, ...]]:
    """What a float16 rewrite declares: the changes, the updated CONVERSION_METADATA table (its
    hash still to be computed; None when the entry is absent or unreadable) and warnings."""
    changes: list[MetadataChange] = []
    warnings: list[str] = []
    value = FP16_ACCUMULATE_FP16 if fp16_compute else FP16_ACCUMULATE_FP32
    _, entry = _entry(model, REDUCED_PRECISION_KEY)
    if entry is None:
        changes.append(MetadataChange(REDUCED_PRECISION_KEY.decode(), "added", None, value.decode()))
    else:
        before = _text(model.buffer_data(entry.get("buffer")))
        changes.append(
            MetadataChange(
                REDUCED_PRECISION_KEY.decode(),
                "replaced" if before != value.decode() else "left",
                before,
                value.decode(),
            )
        )
    table, problem = read_conversion_metadata(model)
    if problem:
        warnings.append(f"{problem}: left as it is, so it does not record the float16 conversion")
        changes.append(MetadataChange(CONVERSION_METADATA_KEY.decode(), "left", None, None))
    elif table is not None:
        modes = _modes(table)
        new_modes = modes if PTQ_FLOAT16 in modes else modes + (PTQ_FLOAT16,)
        table = with_modes(table, new_modes)
        changes.append(
            MetadataChange(
                CONVERSION_METADATA_KEY.decode(),
                "updated",
                f"model_optimization_modes {describe_modes(modes)}",
                f"model_optimization_modes {describe_modes(new_modes)}, model_hash of the output",
            )
        )
    return tuple(changes), table, tuple(warnings)


def set_entry(
    metadata: list[Table],
    buffers: list[Table],
    tensor_buffers: set[int],
    key: bytes,
    data: Any,
    before: bytes | None = None,
) -> None:
    """Point metadata entry ``key`` at ``data`` (appending it, or inserting it before ``before``'s
    entry, when absent). The entry's buffer gets the new bytes in place unless something else reads
    it (another entry, a tensor of ``tensor_buffers``, or the empty buffer 0): then a new buffer.
    Model.metadata_buffer, the deprecated list of metadata buffers, is not another reader."""
    position = next((m for m, e in enumerate(metadata) if e.get("name") == key), None)
    if position is None:
        buffers.append(Table("Buffer", {"data": data}))
        new = Table("Metadata", {"name": key, "buffer": len(buffers) - 1})
        at = (
            next((m for m, e in enumerate(metadata) if e.get("name") == before), len(metadata))
            if before
            else len(metadata)
        )
        metadata.insert(at, new)
        return
    entry = metadata[position]
    b = entry.get("buffer")
    shared = b == 0 or b in tensor_buffers or any(e.get("buffer") == b for m, e in enumerate(metadata) if m != position)
    if shared:
        buffers.append(Table("Buffer", {"data": data}))
        metadata[position] = entry.replace(buffer=len(buffers) - 1)
    else:
        fields = {k: v for k, v in buffers[b].fields.items() if k not in ("offset", "size")}
        buffers[b] = Table("Buffer", {**fields, "data": data})


def _drop_orphan(root: Table, metadata: list[Table], buffers: list[Table], index: int) -> None:
    """Empty buffer ``index`` of a removed metadata entry when nothing else reads it (dropped when it
    is the last buffer, as our conversion appends it, so no other index moves)."""
    readers = {t.get("buffer") for sg in root.tables("subgraphs") for t in sg.tables("tensors")}
    readers |= {m.get("buffer") for m in metadata} | set(root.ints("metadata_buffer")) | {0}
    if index in readers or not 0 <= index < len(buffers):
        return
    if index == len(buffers) - 1:
        buffers.pop()
    else:
        buffers[index] = Table("Buffer", {})


def without_float16(model: TFLiteModel, root: Table, float16_left: bool) -> tuple[Table, tuple[MetadataChange, ...]]:
    """``root`` (a widened model) with its declarations brought up to date: without any FLOAT16
    constant left, ``reduced_precision_support`` goes and PTQ_FLOAT16 leaves CONVERSION_METADATA;
    either way CONVERSION_METADATA's hash is recomputed (the structure changed)."""
    changes: list[MetadataChange] = []
    metadata = list(root.tables("metadata"))
    kept = metadata if float16_left else [m for m in metadata if m.get("name") != REDUCED_PRECISION_KEY]
    if len(kept) != len(metadata):
        removed = next(m for m in metadata if m.get("name") == REDUCED_PRECISION_KEY)
        changes.append(
            MetadataChange(
                REDUCED_PRECISION_KEY.decode(), "removed", _text(model.buffer_data(removed.get("buffer"))), None
            )
        )
    buffers = list(root.tables("buffers"))
    if len(kept) != len(metadata):
        _drop_orphan(root, kept, buffers, removed.get("buffer"))
    table, _ = read_conversion_metadata(model)
    if table is not None:
        modes = _modes(table)
        new_modes = modes if float16_left else tuple(m for m in modes if m != PTQ_FLOAT16)
        tensor_buffers = {t.get("buffer") for sg in root.tables("subgraphs") for t in sg.tables("tensors")}
        set_entry(
            kept, buffers, tensor_buffers, CONVERSION_METADATA_KEY, ConversionMetadataData(with_modes(table, new_modes))
        )
        changes.append(
            MetadataChange(
                CONVERSION_METADATA_KEY.decode(),
                "updated",
                f"model_optimization_modes {describe_modes(modes)}",
                f"model_optimization_modes {describe_modes(new_modes)}, model_hash of the output",
            )
        )
    if not changes:
        return root, ()
    return root.replace(metadata=tuple(kept) if kept else None, buffers=tuple(buffers)), tuple(changes)
