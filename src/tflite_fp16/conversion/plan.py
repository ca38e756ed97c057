"""Decide what to convert, and say why the rest is not: a function of the model and the options.

TensorFlow's rule (2.21, float16 post-training quantization): every FLOAT32
tensor that has buffer data and is read by at least one operator, in every
subgraph, becomes FLOAT16 behind one DEQUANTIZE op. A FLOAT32 constant stays
float32, with a stable reason code (:data:`REASONS`), when it is

* a subgraph output or input (``subgraph_output``, ``subgraph_input``): its
  type is part of the subgraph's interface,
* a variable (``variable``) or written by an operator (``written_by_operator``),
* read by no operator (``unread``),
* the scales or zero points of another tensor's blockwise or multi-axis
  quantization (``quantization_detail``): kernels read it by its index, as it is,
* stored outside the file (``external``: ``Tensor.external_buffer`` names an
  external buffer, schema 3d): its bytes are not there to convert,
* excluded by the options (``keep_pattern``, ``skip_op``, ``min_elements``),
* read by a custom operator (``custom_operator``): its kernel may require a
  constant input, which a DEQUANTIZE output is not,
* read by a "hybrid" operator (``hybrid_operator``), whose weights are
  already int8 (dynamic-range models): those kernels want float constants,
* sparse and read by anything but DENSIFY (``sparse``),
* lossy (``lossy``, unless ``Options.lossy`` says otherwise): float16 cannot
  hold it faithfully: a value beyond +-65504, or a relative L2 cast error
  above ``Options.max_cast_error``.

Buffers are shared between tensors (TensorFlow deduplicates equal bytes, even
across types): a conversion never changes what another tensor reads.

The lossy decision needs the data: :func:`~tflite_fp16.conversion.cast.value_stats`
measures every candidate buffer cheaply, and only those whose cast error
bound exceeds the limit are cast to measure the exact error.
"""

from __future__ import annotations

import fnmatch
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import InvalidModelError, LossyModelError
from ..format.model import (
    BUILTIN_OPS,
    DENSIFY,
    DEQUANTIZE,
    FLOAT32,
    OP_NAMES,
    TENSOR_TYPES,
    TYPE_NAMES,
    Table,
    TFLiteModel,
    detail_references,
    op_of,
)
from ..keepfile import KeepEntry, content_digest
from ..options import Options
from ..text import quote
from .cast import FLOAT16_MAX, FLOAT16_MIN_NORMAL, CastStats, ValueStats, cast_statistics, value_stats
from .metadata import MetadataChange, plan_metadata

__all__ = [
    "DEQUANTIZE_MIN_VERSION",
    "MIN_RUNTIME_VERSION",
    "REASONS",
    "BufferConversion",
    "KeptTensor",
    "Plan",
    "TensorRef",
    "make_plan",
]

DEQUANTIZE_MIN_VERSION = 3  # DEQUANTIZE with a float16 input (op_version.cc)
MIN_RUNTIME_VERSION = "1.15.0"  # the first runtime with float16 DEQUANTIZE
MIN_RUNTIME_VERSION_KEY = b"min_runtime_version"
_QUANTIZED_WEIGHT_TYPES = {TENSOR_TYPES[t] for t in ("INT8", "UINT8", "INT4", "UINT4", "INT2") if t in TENSOR_TYPES}
_CUSTOM = BUILTIN_OPS["CUSTOM"]

#: Why a FLOAT32 constant stays float32: stable codes (JSON ``kept[].reason``) and their meaning.
REASONS: Mapping[str, str] = {
    "subgraph_output": "a subgraph output: its type is part of the subgraph's interface",
    "subgraph_input": "a subgraph input: its type is part of the subgraph's interface",
    "variable": "a variable tensor (is_variable): the interpreter writes it",
    "written_by_operator": "an operator writes it",
    "unread": "no operator reads it",
    "quantization_detail": "another tensor's blockwise or multi-axis quantization names it (its scales or zero points) by index",
    "external": "its data lives in an external buffer (Tensor.external_buffer), not in the file",
    "keep_tensor": "listed in keep_tensors, by subgraph and tensor index (what the tolerance search chose)",
    "keep_name": "named in the keep file (keep_from), with this shape and data",
    "keep_pattern": "its name matches a keep pattern",
    "skip_op": "an operator listed in skip_ops reads it",
    "min_elements": "it has fewer values than min_elements",
    "custom_operator": "a custom operator reads it, whose kernel may need a constant input",
    "hybrid_operator": "a hybrid operator (int8 weights, float activations) reads it",
    "sparse": "it is sparse and read by something other than a DENSIFY",
    "lossy": "float16 cannot hold its values faithfully",
    "tolerance": "the tolerance search (auto) keeps it: in float16 it moves the outputs too far",
}


class TensorRef(NamedTuple):
    """A tensor of the model: subgraph index, tensor index, name and shape."""

    subgraph: int
    tensor: int
    name: str
    shape: tuple[int, ...] = ()


class BufferConversion(NamedTuple):
    """One buffer's float32 data, cast once, read by ``tensors`` after the rewrite.

    With ``new_buffer`` the buffer is also read by something that stays as it
    is (``kept_by``); the float16 data then goes to a new buffer and the
    original buffer is left unchanged. ``values`` are the data's statistics;
    ``lossy`` says why the cast is lossy when it is converted all the same
    (``lossy="convert"``), and is empty otherwise.
    """

    buffer: int
    tensors: tuple[TensorRef, ...]
    elements: int
    new_buffer: bool
    kept_by: tuple[str, ...] = ()
    values: ValueStats | None = None
    lossy: str = ""


class KeptTensor(NamedTuple):
    """A FLOAT32 constant that stays FLOAT32: the reason code (:data:`REASONS`) and a sentence. Its
    first fields are those of :class:`~tflite_fp16.report.ConvertedTensor`."""

    subgraph: int
    tensor: int  # its index in the subgraph
    name: str
    shape: tuple[int, ...]
    buffer: int
    elements: int
    reason: str
    detail: str

    @property
    def ref(self) -> TensorRef:
        return TensorRef(self.subgraph, self.tensor, self.name, self.shape)


@dataclass(frozen=True)
class Plan:
    """What the rewrite will do to a model."""

    conversions: tuple[BufferConversion, ...]
    kept: tuple[KeptTensor, ...]
    # Index of the existing DEQUANTIZE operator code to reuse (its version
    # raised to DEQUANTIZE_MIN_VERSION if lower), or None to append one.
    dequantize_opcode: int | None
    # (old, new) when the min_runtime_version metadata is raised.
    min_runtime_version: tuple[str, str] | None
    sparse_tensors: tuple[TensorRef, ...] = ()
    warnings: tuple[str, ...] = ()
    # Constant tensors (with data) by type name, e.g. {"FLOAT32": 10, "INT32": 2}.
    constants: Mapping[str, int] = field(default_factory=dict)
    # The model's min_runtime_version entry as it is, if any.
    runtime_version: str | None = None
    # The metadata entries a conversion changes (none when nothing converts), and the
    # CONVERSION_METADATA table to write (its model_hash computed when the output is written).
    metadata: tuple[MetadataChange, ...] = ()
    conversion_metadata: Table | None = None
    fp16_compute: bool = False

    @property
    def tensors(self) -> tuple[TensorRef, ...]:
        """Every tensor that becomes FLOAT16."""
        return tuple(t for c in self.conversions for t in c.tensors)

    @property
    def converted_elements(self) -> int:
        return sum(c.elements for c in self.conversions)

    @property
    def lossy_conversions(self) -> tuple[BufferConversion, ...]:
        """Conversions that lose values (only with ``lossy="convert"``)."""
        return tuple(c for c in self.conversions if c.lossy)

    def kept_by_reason(self) -> dict[str, int]:
        """How many tensors stay float32 for each reason code, in :data:`REASONS` order."""
        counts = Counter(k.reason for k in self.kept)
        return {reason: counts[reason] for reason in REASONS if counts[reason]}

    def nothing_to_convert(self) -> str:
        """Why nothing converts, in one line (empty when something does)."""
        if self.conversions:
            return ""
        float16 = self.constants.get("FLOAT16", 0)
        parts = []
        if float16:
            parts.append(f"{float16} constant{'s are' if float16 != 1 else ' is'} float16 already")
        if self.kept:
            reasons = ", ".join(f"{n} {r}" for r, n in self.kept_by_reason().items())
            parts.append(f"{len(self.kept)} float32 constant{'s' if len(self.kept) != 1 else ''} kept ({reasons})")
        else:
            parts.append("no float32 constant")
        others = {k: v for k, v in self.constants.items() if k not in ("FLOAT16", "FLOAT32")}
        if others and not float16:
            parts.append("constants: " + ", ".join(f"{v} {k}" for k, v in sorted(others.items())))
        return "nothing to convert: " + ", ".join(parts)

    def describe(self) -> str:
        """Every decision, one line each (what ``--dry-run -v`` prints of the plan)."""
        lines = [
            f"{len(self.tensors)} tensors in {len(self.conversions)} buffers become float16 "
            f"({self.converted_elements} values, {self.converted_elements * 2} bytes saved before new tensors and ops)"
        ]
        for c in self.conversions:
            names = ", ".join(f"subgraph {t.subgraph} tensor {t.tensor} {quote(t.name)}" for t in c.tensors)
            where = "a new buffer" if c.new_buffer else f"buffer {c.buffer} in place"
            extra = f" (buffer {c.buffer} stays for {', '.join(c.kept_by)})" if c.new_buffer else ""
            lossy = f"; LOSSY: {c.lossy}" if c.lossy else ""
            lines.append(f"  convert {names}: {c.elements} values into {where}{extra}{lossy}")
        for k in self.kept:
            lines.append(
                f"  keep subgraph {k.subgraph} tensor {k.tensor} {quote(k.name)} float32 ({k.reason}): {k.detail}"
            )
        if self.conversions:
            if self.dequantize_opcode is None:
                lines.append(f"  add a DEQUANTIZE operator code (version {DEQUANTIZE_MIN_VERSION})")
            else:
                lines.append(
                    f"  reuse DEQUANTIZE operator code {self.dequantize_opcode} (version >= {DEQUANTIZE_MIN_VERSION})"
                )
        for change in self.metadata:
            if change.action == "left":
                continue
            before = f"{change.before} -> " if change.before is not None else ""
            lines.append(f"  metadata {change.name}: {change.action}, {before}{change.after}")
        return "\n".join(lines)


def _name(tensor_name: bytes | None) -> str:
    return (tensor_name or b"").decode("utf-8", "replace")


def _version_tuple(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return None


def read_min_runtime_version(model: TFLiteModel) -> tuple[int, str] | None:
    """(metadata index, version string) of the min_runtime_version entry, if any."""
    for m, entry in enumerate(model.root.tables("metadata")):
        if entry.get("name") == MIN_RUNTIME_VERSION_KEY:
            raw = model.buffer_data(entry.get("buffer")).tobytes()
            return m, raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return None


def matches(name: str, pattern: str) -> bool:
    """``name`` or one of its ``;``-separated parts (TensorFlow's fused names) matches ``pattern``."""
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return ";" in name and any(fnmatch.fnmatchcase(part, pattern) for part in name.split(";"))


class _Subgraph:
    """Who reads and who writes each tensor of one subgraph."""

    def __init__(
        self,
        model: TFLiteModel,
        index: int,
        ops_of_codes: list[int],
        skip: _SkipOps,
        options: Options,
        named: Mapping[tuple[int, int], KeepEntry],
    ) -> None:
        self.model = model
        self.index = index
        self.named = named
        self.options = options
        self.skip = skip
        subgraph = model.subgraphs[index]
        self.tensors = subgraph.tables("tensors")
        self.operators = subgraph.tables("operators")
        self.codes = model.operator_codes
        self.ops = [ops_of_codes[op.get("opcode_index")] for op in self.operators]
        self.readers: dict[int, list[int]] = defaultdict(list)
        self.writer: dict[int, int] = {}
        for o, op in enumerate(self.operators):
            for i in set(op.ints("inputs")):
                if i >= 0:
                    self.readers[i].append(o)
            for i in op.ints("outputs"):
                self.writer.setdefault(i, o)
        # Constant int8/uint8/int4/uint4/int2 tensors (here or in an external buffer): weights that
        # make an operator "hybrid".
        self.quantized = {
            t
            for t, tensor in enumerate(self.tensors)
            if tensor.get("type") in _QUANTIZED_WEIGHT_TYPES
            and (tensor.get("external_buffer") or model.buffer_data(tensor.get("buffer")).size > 0)
        }
        # Tensors that a blockwise or multi-axis quantization names: tensor -> (field, the quantized tensor).
        self.detail_refs: dict[int, tuple[str, int]] = {
            index: (field, t)
            for t, tensor in enumerate(self.tensors)
            if "quantization" in tensor.fields
            for field, index in detail_references(tensor)
        }
        self.inputs = set(subgraph.ints("inputs"))
        self.outputs = set(subgraph.ints("outputs"))
        self._hybrid: dict[int, bool] = {}

    def custom_code(self, o: int) -> str:
        return _name(self.codes[self.operators[o].get("opcode_index")].get("custom_code"))

    def label(self, o: int) -> str:
        if self.ops[o] == _CUSTOM:
            return f"operator {o} (custom {quote(self.custom_code(o))})"
        return f"operator {o} ({OP_NAMES.get(self.ops[o], self.ops[o])})"

    def is_hybrid(self, o: int) -> bool:
        """Float in, float out, with a constant int8 weight: a dynamic-range kernel."""
        known = self._hybrid.get(o)
        if known is None:
            known = self._hybrid[o] = self._is_hybrid(o)
        return known

    def _is_hybrid(self, o: int) -> bool:
        if not self.quantized or self.ops[o] == DEQUANTIZE:
            return False
        op = self.operators[o]
        quantized = self.quantized
        if not any(i in quantized for i in op.ints("inputs")):
            return False
        return any(i >= 0 and self.tensors[i].get("type") == FLOAT32 for i in op.ints("outputs"))

    def keep_reason(self, t: int, name: str) -> tuple[str, str] | None:
        """(reason code, sentence) why FLOAT32 constant ``t`` stays FLOAT32, or None to convert it
        (unless it turns out lossy)."""
        tensor = self.tensors[t]
        if t in self.outputs:
            return "subgraph_output", "a subgraph output: its type is part of the subgraph's interface"
        if t in self.inputs:
            return "subgraph_input", "a subgraph input: its type is part of the subgraph's interface"
        if tensor.get("is_variable"):
            return "variable", "a variable tensor (is_variable): the interpreter writes it"
        if t in self.writer:
            return "written_by_operator", f"written by {self.label(self.writer[t])}"
        if t in self.detail_refs:
            field, owner = self.detail_refs[t]
            kind = self.tensors[owner].fields["quantization"].fields["details"].name
            return "quantization_detail", f"the {field} of tensor {owner}'s {kind}, which kernels read by index"
        if not self.readers.get(t):
            return "unread", "no operator reads it"
        options = self.options
        if (self.index, t) in options.keep_tensors:
            return "keep_tensor", "kept by identity (keep_tensors)"
        entry = self.named.get((self.index, t))
        if entry is not None:
            how = "" if entry.text == name else f" (its name there: {quote(entry.text)}; the same shape and data)"
            return "keep_name", f"named in the keep file{how}"
        for pattern in options.keep:
            if matches(name, pattern):
                return "keep_pattern", f"its name matches the keep pattern {quote(pattern)}"
        if self.skip:
            for o in self.readers[t]:
                listed = self.skip.lists(self.ops[o], self.custom_code(o) if self.ops[o] == _CUSTOM else "")
                if listed:
                    return "skip_op", f"read by {self.label(o)}, an operator to skip ({quote(listed)})"
        if (
            options.min_elements
            and not tensor.has("sparsity")
            and math.prod(tensor.ints("shape")) < options.min_elements
        ):
            return "min_elements", f"fewer than {options.min_elements} values (the --min-elements limit)"
        for o in self.readers[t]:
            if self.ops[o] == _CUSTOM and not options.custom_op_inputs:
                return "custom_operator", (
                    f"read by {self.label(o)}, whose kernel may need a constant input "
                    "(--convert-custom-op-inputs, custom_op_inputs=True in Python, converts it)"
                )
            if self.is_hybrid(o):
                return "hybrid_operator", f"read by hybrid {self.label(o)}, whose weights are already quantized"
            if tensor.has("sparsity") and (self.ops[o] != DENSIFY or len(self.operators[o].ints("outputs")) != 1):
                return "sparse", f"sparse, and read by {self.label(o)} rather than a DENSIFY with one output"
        return None


class _SkipOps:
    """The operators of ``Options.skip_ops``: builtin codes and custom names."""

    def __init__(self, names: Sequence[str]) -> None:
        self.builtins = {BUILTIN_OPS[n]: n for n in names if not n.startswith("CUSTOM:")}
        self.customs = {n[len("CUSTOM:") :]: n for n in names if n.startswith("CUSTOM:")}

    def __bool__(self) -> bool:
        return bool(self.builtins or self.customs)

    def lists(self, op: int, custom_code: str) -> str:
        """The skip_ops entry naming this operator, or ''."""
        if op == _CUSTOM:
            return self.customs.get(custom_code, "")
        return self.builtins.get(op, "")


def make_plan(model: TFLiteModel, options: Options | None = None, executor: Executor | None = None) -> Plan:
    """The plan for ``model`` under ``options``; does not change the model.

    Raises :class:`~tflite_fp16.errors.LossyModelError` for lossy constants
    under ``lossy="error"``.

    >>> from tflite_fp16.format.reader import open_model
    >>> with open_model("examples/audio_frontend.tflite") as model:
    ...     plan = make_plan(model)
    >>> len(plan.conversions), [k.reason for k in plan.kept]
    (2, ['lossy', 'lossy'])
    """
    options = options if options is not None else Options()
    codes = model.operator_codes
    ops_of_codes = [op_of(code) for code in codes]
    skip = _SkipOps(options.skip_ops)
    candidates: dict[int, list[TensorRef]] = defaultdict(list)
    kept_readers: dict[int, list[str]] = defaultdict(list)  # what reads a buffer's bytes as they are
    kept: list[KeptTensor] = []
    constants: Counter[str] = Counter()
    unused_patterns = set(options.keep)
    sparse_refs = set()

    for entry in model.root.tables("metadata"):
        kept_readers[entry.get("buffer")].append(f"metadata {quote(_name(entry.get('name')))}")
    for index in model.root.ints("metadata_buffer"):
        kept_readers[index].append("Model.metadata_buffer")

    named, name_warnings = _resolve_keep_names(model, options.keep_names)
    listed = set(options.keep_tensors)
    for s in range(len(model.subgraphs)):
        subgraph = _Subgraph(model, s, ops_of_codes, skip, options, named)
        for t, tensor in enumerate(subgraph.tensors):
            b = tensor.get("buffer")
            data = model.buffer_data(b)
            external = tensor.get("external_buffer")
            if data.size == 0 and not external:
                continue
            tensor_type = tensor.get("type")
            constants[TYPE_NAMES.get(tensor_type, f"type {tensor_type}")] += 1
            if tensor_type != FLOAT32:
                if data.size:
                    type_name = TYPE_NAMES.get(tensor_type, f"type {tensor_type}")
                    kept_readers[b].append(f"{type_name} tensor {t} of subgraph {s}")
                continue
            name = _name(tensor.get("name"))
            listed.discard((s, t))
            if unused_patterns:
                unused_patterns -= {p for p in unused_patterns if matches(name, p)}
            ref = TensorRef(s, t, name, tuple(tensor.ints("shape")))
            if external:
                elements = math.prod(max(0, d) for d in ref.shape)
                kept.append(
                    KeptTensor(
                        *ref, b, elements, "external", f"its data lives in external buffer {external}, outside the file"
                    )
                )
                if data.size:
                    kept_readers[b].append(f"float32 tensor {t} of subgraph {s}")
                continue
            found = subgraph.keep_reason(t, name)
            if found is not None:
                kept.append(KeptTensor(*ref, b, data.size // 4, *found))
                kept_readers[b].append(f"float32 tensor {t} of subgraph {s}")
                continue
            _check_size(ref, tensor, b, data.size)
            candidates[b].append(ref)
            if tensor.has("sparsity"):
                sparse_refs.add(ref)

    buffers = sorted(candidates)
    stats = _stats_by_buffer(model, buffers, executor)
    lossy = _find_lossy(model, stats, options.max_cast_error, executor)
    if lossy and options.lossy == "error":
        raise LossyModelError(_lossy_error_message(lossy, candidates, options.max_cast_error))

    conversions = []
    sparse: list[TensorRef] = []
    for b in buffers:
        refs = candidates[b]
        if b in lossy and options.lossy == "keep":
            for ref in refs:
                kept.append(KeptTensor(*ref, b, stats[b].elements, "lossy", lossy[b]))
            continue
        conversions.append(
            BufferConversion(
                buffer=b,
                tensors=tuple(refs),
                elements=stats[b].elements,
                new_buffer=bool(kept_readers.get(b)),
                kept_by=tuple(kept_readers.get(b, ())),
                values=stats[b],
                lossy=lossy.get(b, ""),
            )
        )
        if sparse_refs:
            sparse.extend(ref for ref in refs if ref in sparse_refs)
    kept.sort(key=lambda k: (k.subgraph, k.tensor))

    warnings = [f"keep pattern {quote(p)} matches no float32 constant" for p in options.keep if p in unused_patterns]
    warnings.extend(name_warnings)
    warnings.extend(f"keep_tensors ({s}, {t}) is not a float32 constant of the model" for s, t in sorted(listed))
    present_builtins = set(ops_of_codes)
    present_customs = {_name(c.get("custom_code")) for c, op in zip(codes, ops_of_codes) if op == _CUSTOM}
    for name in options.skip_ops:
        if name.startswith("CUSTOM:"):
            present = name[len("CUSTOM:") :] in present_customs
        else:
            present = BUILTIN_OPS[name] in present_builtins
        if not present:
            warnings.append(f"skip_ops {quote(name)} matches no operator of the model")

    dequantize_opcode = None
    min_runtime = None
    found_version = read_min_runtime_version(model)
    metadata: tuple[MetadataChange, ...] = ()
    conversion_metadata = None
    if conversions:
        metadata, conversion_metadata, metadata_warnings = plan_metadata(model, options.fp16_compute)
        warnings.extend(metadata_warnings)
        dequantize_candidates = [
            i for i, op in enumerate(ops_of_codes) if op == DEQUANTIZE and not codes[i].get("custom_code")
        ]
        if dequantize_candidates:
            dequantize_opcode = max(dequantize_candidates, key=lambda i: (codes[i].get("version"), -i))
        if found_version is not None:
            current = _version_tuple(found_version[1])
            if current is not None and current < _version_tuple(MIN_RUNTIME_VERSION):  # type: ignore[operator]
                min_runtime = (found_version[1], MIN_RUNTIME_VERSION)
                metadata = (MetadataChange(MIN_RUNTIME_VERSION_KEY.decode(), "raised", *min_runtime),) + metadata
    return Plan(
        tuple(conversions),
        tuple(kept),
        dequantize_opcode,
        min_runtime,
        tuple(sparse),
        tuple(warnings),
        dict(constants),
        found_version[1] if found_version is not None else None,
        metadata,
        conversion_metadata,
        options.fp16_compute,
    )


def _resolve_keep_names(
    model: TFLiteModel, entries: Sequence[KeepEntry]
) -> tuple[dict[tuple[int, int], KeepEntry], list[str]]:
    """The FLOAT32 constants the keep file's exact entries name: by name, shape and data; else by
    shape and data alone (a re-export that renamed them). A name whose tensor holds other data
    now keeps nothing. Names are looked up in a set (linear in the entries and the tensors);
    only the data of tensors with a named or listed shape is hashed."""
    if not entries:
        return {}, []
    by_name: dict[str, list[KeepEntry]] = defaultdict(list)
    by_content: dict[tuple[tuple[int, ...] | None, str | None], list[KeepEntry]] = defaultdict(list)
    for entry in entries:
        by_name[entry.text].append(entry)
        by_content[(entry.shape, entry.digest)].append(entry)
    shapes = {entry.shape for entry in entries}
    exact: dict[KeepEntry, list[tuple[int, int, str]]] = defaultdict(list)
    content: dict[KeepEntry, list[tuple[int, int, str]]] = defaultdict(list)
    changed: dict[KeepEntry, str] = {}
    digests: dict[int, str] = {}  # by id of the data: buffers that share data are hashed once
    for s, subgraph in enumerate(model.subgraphs):
        for t, tensor in enumerate(subgraph.tables("tensors")):
            if tensor.get("type") != FLOAT32:
                continue
            data = model.buffer_data(tensor.get("buffer"))
            name = _name(tensor.get("name"))
            shape = tuple(tensor.ints("shape"))
            if not data.size or (name not in by_name and shape not in shapes):
                continue
            digest = digests.get(id(data))
            if digest is None:
                digest = digests[id(data)] = content_digest(data)
            for entry in by_name.get(name, ()):
                if (entry.shape, entry.digest) == (shape, digest):
                    exact[entry].append((s, t, name))
                else:
                    changed[entry] = f"shape {list(shape)}, sha256 {digest}"
            for entry in by_content.get((shape, digest), ()):
                if entry.text != name:
                    content[entry].append((s, t, name))
    kept: dict[tuple[int, int], KeepEntry] = {}
    warnings: list[str] = []
    renamed: list[str] = []
    for entry in dict.fromkeys(entries):
        shown = f"keep file entry {quote(entry.text)} (shape {list(entry.shape or ())}, sha256 {entry.digest})"
        if exact.get(entry):
            kept.update({(s, t): entry for s, t, _ in exact[entry]})
        elif content.get(entry):
            kept.update({(s, t): entry for s, t, _ in content[entry]})
            renamed.append(f"{quote(entry.text)} is {', '.join(quote(n) for _, _, n in content[entry][:2])}")
        elif entry in changed:
            warnings.append(f"{shown}: the tensor of that name holds other data now ({changed[entry]}); not kept")
        else:
            warnings.append(f"{shown} matches no float32 constant")
    if renamed:
        more = f" and {len(renamed) - 3} more" if len(renamed) > 3 else ""
        warnings.append(
            f"{len(renamed)} keep file names matched tensors of other names by shape and data (a re-export?): "
            f"{'; '.join(renamed[:3])}{more}"
        )
    return kept, warnings


def _stats_by_buffer(model: TFLiteModel, buffers: list[int], executor: Executor | None) -> dict[int, ValueStats]:
    """Value statistics of each buffer's data, each distinct data array measured once
    (a file may point several buffers at one data vector)."""
    distinct: dict[int, tuple[np.ndarray, list[int]]] = {}
    for b in buffers:
        data = model.buffer_data(b)
        distinct.setdefault(id(data), (data, []))[1].append(b)
    groups = list(distinct.values())
    measured = value_stats([data for data, _ in groups], executor)
    return {b: values for (_, members), values in zip(groups, measured) for b in members}


def _find_lossy(
    model: TFLiteModel, stats: dict[int, ValueStats], limit: float, executor: Executor | None
) -> dict[int, str]:
    """Buffer -> why its cast is lossy, for every lossy buffer. Exact errors only where the bound
    exceeds ``limit``, once per distinct data array."""
    lossy = {}
    found: dict[int, str] = {}
    for b, values in stats.items():
        if not values.saturates and values.error_bound() <= limit:
            continue
        raw = model.buffer_data(b)
        if id(raw) not in found:
            data = raw.view("<f4")
            exact = cast_statistics(data, values, executor)
            found[id(raw)] = lossy_detail(data, exact, limit) if exact.saturated or exact.rel_l2_error > limit else ""
        if found[id(raw)]:
            lossy[b] = found[id(raw)]
    return lossy


def _g(value: float) -> str:
    return f"{value:.3g}"


def lossy_detail(data: np.ndarray, stats: CastStats, limit: float) -> str:
    """Why casting float32 ``data`` to float16 is lossy, in numbers (``stats`` are its cast's)."""
    parts = []
    n = stats.elements
    if stats.saturated:
        beyond = data[np.abs(data) > FLOAT16_MAX]
        infinities = [
            s for s, present in (("+inf", np.isposinf(beyond).any()), ("-inf", np.isneginf(beyond).any())) if present
        ]
        if stats.saturated == 1 and infinities:
            parts.append(
                f"value {infinities[0]} would become {infinities[0][0]}65504 (the cast saturates at the largest float16)"
            )
        else:
            finite = beyond[np.isfinite(beyond)]
            examples = infinities + ([f"largest finite {_g(float(np.abs(finite).max()))}"] if finite.size else [])
            parts.append(
                f"{stats.saturated} of {n} values lie beyond +-65504 and would saturate to +-65504 ({', '.join(examples)})"
            )
    if stats.flushed:
        half = np.clip(data, -FLOAT16_MAX, FLOAT16_MAX).astype("<f2")
        flushed = np.abs(data[(half == 0) & (data != 0)])
        example = _g(float(flushed[0])) if stats.flushed == 1 else f"largest {_g(float(flushed.max()))}"
        parts.append(f"{stats.flushed} of {n} values ({example}) would become 0")
    if stats.rel_l2_error > limit and not stats.saturated and stats.flushed < n:
        subnormal = int(np.count_nonzero((np.abs(data) < FLOAT16_MIN_NORMAL) & (data != 0)))
        sentence = f"relative L2 cast error {_g(stats.rel_l2_error)} exceeds max_cast_error {_g(limit)}"
        if subnormal and not stats.flushed:
            sentence += f" ({subnormal} of {n} values lie below float16's normal range, {_g(FLOAT16_MIN_NORMAL)})"
        parts.append(sentence)
    return "; ".join(parts)


def _lossy_error_message(lossy: dict[int, str], candidates: dict[int, list[TensorRef]], limit: float) -> str:
    names = []
    for b, detail in lossy.items():
        for ref in candidates[b]:
            names.append(f"subgraph {ref.subgraph} tensor {ref.tensor} {quote(ref.name)} ({detail})")
    shown = "; ".join(names[:5]) + (f"; and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"{len(names)} float32 constant{'s' if len(names) != 1 else ''} cannot be stored as float16 faithfully "
        f"(cast error limit {_g(limit)}): {shown}. Use lossy='keep' (--lossy keep) to keep them float32, "
        f"or lossy='convert' (--lossy convert) to convert them as TensorFlow does"
    )


MAX_DIMENSIONS = 64


def _check_size(ref: TensorRef, tensor: Table, buffer: int, size: int) -> None:
    """FLOAT32 data must fill the tensor's shape (sparse data: whole float32 values); a shape
    must not have negative dimensions or more than 64 of them."""
    shape = tensor.ints("shape")
    if len(shape) > MAX_DIMENSIONS or (shape and min(shape) < 0):
        raise InvalidModelError(
            f"subgraph {ref.subgraph} tensor {ref.tensor} {quote(ref.name)} is a constant of shape "
            f"{shape if len(shape) <= 8 else str(shape[:8])[:-1] + ', ...]'} ({len(shape)} dimensions): "
            f"a constant's shape has at most {MAX_DIMENSIONS} dimensions, none negative"
        )
    expected = None if tensor.has("sparsity") else 4 * math.prod(shape)
    if (expected is not None and size != expected) or size % 4:
        raise InvalidModelError(
            f"subgraph {ref.subgraph} tensor {ref.tensor} {quote(ref.name)} is FLOAT32 of shape {shape} but its buffer "
            f"{buffer} holds {size} bytes" + (f" (expected {expected})" if expected is not None else "")
        )
