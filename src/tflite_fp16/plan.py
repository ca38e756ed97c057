"""Decide what to convert, and say why the rest is not: a pure function of the model.

TensorFlow's rule (2.21, float16 post-training quantization): every FLOAT32
tensor that has buffer data and is read by at least one operator, in every
subgraph, becomes FLOAT16 behind one DEQUANTIZE op. Not converted:

* subgraph outputs and inputs (their type is part of the subgraph's interface),
* variable tensors (``is_variable``: the interpreter writes them),
* tensors some operator writes,
* constants read by a "hybrid" operator, whose weights are already int8
  (dynamic-range models): those kernels want their float inputs as constants,
* constants read by a custom operator: its kernel may require a constant
  input, which a DEQUANTIZE output is not,
* sparse constants read by anything but DENSIFY,
* every tensor that is not FLOAT32.

Buffers are shared between tensors (TensorFlow deduplicates equal bytes, even
across types): a conversion never changes what another tensor reads.
"""

from __future__ import annotations

import fnmatch
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Tuple

from .errors import InvalidModelError
from .model import BUILTIN_OPS, DENSIFY, DEQUANTIZE, FLOAT32, TENSOR_TYPES, Table, TFLiteModel, op_of

__all__ = ["Options", "TensorRef", "BufferConversion", "SkippedTensor", "Plan", "make_plan", "DEQUANTIZE_MIN_VERSION", "MIN_RUNTIME_VERSION"]

DEQUANTIZE_MIN_VERSION = 3  # DEQUANTIZE with a float16 input (op_version.cc)
MIN_RUNTIME_VERSION = "1.15.0"  # the first runtime with float16 DEQUANTIZE
MIN_RUNTIME_VERSION_KEY = b"min_runtime_version"
_OP_NAMES = {v: k for k, v in BUILTIN_OPS.items()}
_TYPE_NAMES = {v: k for k, v in TENSOR_TYPES.items()}
_QUANTIZED_WEIGHT_TYPES = {TENSOR_TYPES[t] for t in ("INT8", "UINT8", "INT4") if t in TENSOR_TYPES}


@dataclass(frozen=True)
class Options:
    """Choices that narrow (or widen) what the rewrite converts.

    ``keep``: tensor names (``fnmatch`` patterns, e.g. ``"*/attention/*"``) that stay
    float32. ``min_elements``: constants with fewer values stay float32 (they save
    little and cost a DEQUANTIZE op each). ``custom_op_inputs``: also convert
    constants read by custom operators, for kernels known to take any float32 input.
    """

    keep: Tuple[str, ...] = ()
    min_elements: int = 0
    custom_op_inputs: bool = False


class TensorRef(NamedTuple):
    """A tensor of the model: subgraph index, tensor index and name."""

    subgraph: int
    tensor: int
    name: str


class BufferConversion(NamedTuple):
    """One buffer's float32 data, cast once, read by ``tensors`` after the rewrite.

    With ``new_buffer`` the buffer is also read by something that stays as it
    is (``kept_by``); the float16 data then goes to a new buffer and the
    original buffer is left unchanged.
    """

    buffer: int
    tensors: Tuple[TensorRef, ...]
    elements: int
    new_buffer: bool
    kept_by: Tuple[str, ...] = ()


class SkippedTensor(NamedTuple):
    """A FLOAT32 tensor with data that stays FLOAT32, and why."""

    tensor: TensorRef
    buffer: int
    reason: str


@dataclass(frozen=True)
class Plan:
    """What the rewrite will do to a model."""

    conversions: Tuple[BufferConversion, ...]
    skipped: Tuple[SkippedTensor, ...]
    # Index of the existing DEQUANTIZE operator code to reuse (its version
    # raised to DEQUANTIZE_MIN_VERSION if lower), or None to append one.
    dequantize_opcode: Optional[int]
    # (old, new) when the min_runtime_version metadata is raised.
    min_runtime_version: Optional[Tuple[str, str]]
    sparse_tensors: Tuple[TensorRef, ...] = ()

    @property
    def tensors(self) -> Tuple[TensorRef, ...]:
        """Every tensor that becomes FLOAT16."""
        return tuple(t for c in self.conversions for t in c.tensors)

    @property
    def converted_elements(self) -> int:
        return sum(c.elements for c in self.conversions)

    def describe(self) -> str:
        """A human-readable account of the plan (what ``--dry-run`` prints)."""
        lines = [
            f"{len(self.tensors)} tensors in {len(self.conversions)} buffers become float16 "
            f"({self.converted_elements} values, {self.converted_elements * 2} bytes saved before new tensors and ops)"
        ]
        for c in self.conversions:
            names = ", ".join(f"subgraph {t.subgraph} tensor {t.tensor} '{t.name}'" for t in c.tensors)
            where = "a new buffer" if c.new_buffer else f"buffer {c.buffer} in place"
            extra = f" (buffer {c.buffer} stays for {', '.join(c.kept_by)})" if c.new_buffer else ""
            lines.append(f"  convert {names}: {c.elements} values into {where}{extra}")
        for s in self.skipped:
            lines.append(f"  keep subgraph {s.tensor.subgraph} tensor {s.tensor.tensor} '{s.tensor.name}' float32: {s.reason}")
        if self.conversions:
            if self.dequantize_opcode is None:
                lines.append(f"  add a DEQUANTIZE operator code (version {DEQUANTIZE_MIN_VERSION})")
            else:
                lines.append(f"  reuse DEQUANTIZE operator code {self.dequantize_opcode} (version >= {DEQUANTIZE_MIN_VERSION})")
        if self.min_runtime_version:
            old, new = self.min_runtime_version
            lines.append(f"  raise min_runtime_version {old} -> {new}")
        return "\n".join(lines)


def _name(tensor_name: Optional[bytes]) -> str:
    return (tensor_name or b"").decode("utf-8", "replace")


def _version_tuple(text: str) -> Optional[Tuple[int, ...]]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return None


def read_min_runtime_version(model: TFLiteModel) -> Optional[Tuple[int, str]]:
    """(metadata index, version string) of the min_runtime_version entry, if any."""
    for m, entry in enumerate(model.root.tables("metadata")):
        if entry.get("name") == MIN_RUNTIME_VERSION_KEY:
            raw = model.buffer_data(entry.get("buffer")).tobytes()
            return m, raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return None


class _Subgraph:
    """Who reads and who writes each tensor of one subgraph."""

    def __init__(self, model: TFLiteModel, index: int, ops_of_codes: List[int], options: Options) -> None:
        self.model = model
        self.options = options
        subgraph = model.subgraphs[index]
        self.tensors = subgraph.tables("tensors")
        self.operators = subgraph.tables("operators")
        self.codes = model.operator_codes
        self.ops = [ops_of_codes[op.get("opcode_index")] for op in self.operators]
        self.readers: Dict[int, List[int]] = defaultdict(list)
        self.writer: Dict[int, int] = {}
        for o, op in enumerate(self.operators):
            for i in sorted(set(op.ints("inputs"))):
                if i >= 0:
                    self.readers[i].append(o)
            for i in op.ints("outputs"):
                self.writer.setdefault(i, o)
        self.inputs = set(subgraph.ints("inputs"))
        self.outputs = set(subgraph.ints("outputs"))
        self._hybrid: Dict[int, bool] = {}

    def label(self, o: int) -> str:
        if self.ops[o] == BUILTIN_OPS["CUSTOM"]:
            custom = self.codes[self.operators[o].get("opcode_index")].get("custom_code") or b""
            return f"operator {o} (custom '{_name(custom)}')"
        return f"operator {o} ({_OP_NAMES.get(self.ops[o], self.ops[o])})"

    def is_hybrid(self, o: int) -> bool:
        """Float in, float out, with a constant int8 weight: a dynamic-range kernel."""
        known = self._hybrid.get(o)
        if known is None:
            known = self._hybrid[o] = self._is_hybrid(o)
        return known

    def _is_hybrid(self, o: int) -> bool:
        if self.ops[o] == DEQUANTIZE:
            return False
        op = self.operators[o]
        quantized_weight = any(
            i >= 0
            and self.tensors[i].get("type") in _QUANTIZED_WEIGHT_TYPES
            and self.model.buffer_data(self.tensors[i].get("buffer")).size > 0
            for i in op.ints("inputs")
        )
        return quantized_weight and any(i >= 0 and self.tensors[i].get("type") == FLOAT32 for i in op.ints("outputs"))

    def skip_reason(self, t: int) -> Optional[str]:
        """Why FLOAT32 constant ``t`` must stay FLOAT32, or None to convert it."""
        tensor = self.tensors[t]
        if t in self.outputs:
            return "subgraph output (its type is part of the subgraph's interface)"
        if t in self.inputs:
            return "subgraph input (its type is part of the subgraph's interface)"
        if tensor.get("is_variable"):
            return "variable tensor (is_variable): the interpreter writes it"
        if t in self.writer:
            return f"written by {self.label(self.writer[t])}"
        if not self.readers.get(t):
            return "not read by any operator"
        options = self.options
        if options.keep:
            name = _name(tensor.get("name"))
            for pattern in options.keep:
                if fnmatch.fnmatchcase(name, pattern):
                    return f"kept float32 by the keep pattern {pattern!r}"
        if options.min_elements and not tensor.has("sparsity") and math.prod(tensor.ints("shape")) < options.min_elements:
            return f"fewer than {options.min_elements} values (min_elements)"
        for o in self.readers[t]:
            if self.ops[o] == BUILTIN_OPS["CUSTOM"] and not options.custom_op_inputs:
                return f"read by {self.label(o)}, whose kernel may need a constant input (custom_op_inputs converts it)"
            if self.is_hybrid(o):
                return f"read by hybrid {self.label(o)}, whose weights are already quantized"
            if tensor.has("sparsity") and (self.ops[o] != DENSIFY or len(self.operators[o].ints("outputs")) != 1):
                return f"sparse, and read by {self.label(o)} rather than a DENSIFY with one output"
        return None


def make_plan(model: TFLiteModel, options: Options = Options()) -> Plan:
    """The plan for ``model`` under ``options``; does not change it.

    >>> from tflite_fp16.reader import read_model      # doctest: +SKIP
    >>> print(make_plan(read_model("model.tflite")).describe())   # doctest: +SKIP
    """
    codes = model.operator_codes
    ops_of_codes = [op_of(code) for code in codes]
    converted_by_buffer: Dict[int, List[TensorRef]] = defaultdict(list)
    kept_readers: Dict[int, List[str]] = defaultdict(list)  # what reads a buffer's bytes as they are
    skipped: List[SkippedTensor] = []
    sparse: List[TensorRef] = []

    for entry in model.root.tables("metadata"):
        kept_readers[entry.get("buffer")].append(f"metadata '{_name(entry.get('name'))}'")
    for index in model.root.ints("metadata_buffer"):
        kept_readers[index].append("Model.metadata_buffer")

    for s in range(len(model.subgraphs)):
        subgraph = _Subgraph(model, s, ops_of_codes, options)
        for t, tensor in enumerate(subgraph.tensors):
            b = tensor.get("buffer")
            data = model.buffer_data(b)
            if data.size == 0:
                continue
            ref = TensorRef(s, t, _name(tensor.get("name")))
            if tensor.get("type") != FLOAT32:
                type_name = _TYPE_NAMES.get(tensor.get("type"), f"type {tensor.get('type')}")
                kept_readers[b].append(f"{type_name} tensor {t} of subgraph {s}")
                continue
            reason = subgraph.skip_reason(t)
            if reason is not None:
                skipped.append(SkippedTensor(ref, b, reason))
                kept_readers[b].append(f"float32 tensor {t} of subgraph {s}")
                continue
            _check_size(ref, tensor, b, data.size)
            converted_by_buffer[b].append(ref)
            if tensor.has("sparsity"):
                sparse.append(ref)

    conversions = tuple(
        BufferConversion(
            buffer=b,
            tensors=tuple(converted_by_buffer[b]),
            elements=model.buffer_data(b).size // 4,
            new_buffer=bool(kept_readers.get(b)),
            kept_by=tuple(kept_readers.get(b, ())),
        )
        for b in sorted(converted_by_buffer)
    )

    dequantize_opcode = None
    min_runtime = None
    if conversions:
        candidates = [i for i, op in enumerate(ops_of_codes) if op == DEQUANTIZE and not codes[i].get("custom_code")]
        if candidates:
            dequantize_opcode = max(candidates, key=lambda i: (codes[i].get("version"), -i))
        found = read_min_runtime_version(model)
        if found is not None:
            current = _version_tuple(found[1])
            if current is not None and current < _version_tuple(MIN_RUNTIME_VERSION):  # type: ignore[operator]
                min_runtime = (found[1], MIN_RUNTIME_VERSION)
    return Plan(conversions, tuple(skipped), dequantize_opcode, min_runtime, tuple(sparse))


def _check_size(ref: TensorRef, tensor: Table, buffer: int, size: int) -> None:
    """FLOAT32 data must fill the tensor's shape (sparse data: whole float32 values)."""
    shape = tensor.ints("shape")
    expected = None if tensor.has("sparsity") else 4 * math.prod(shape)
    if (expected is not None and size != expected) or size % 4:
        raise InvalidModelError(
            f"subgraph {ref.subgraph} tensor {ref.tensor} '{ref.name}' is FLOAT32 of shape {shape} but its buffer "
            f"{buffer} holds {size} bytes" + (f" (expected {expected})" if expected is not None else "")
        )
