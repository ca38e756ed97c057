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

from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

from .errors import InvalidModelError
from .model import BUILTIN_OPS, DENSIFY, DEQUANTIZE, FLOAT32, TENSOR_TYPES, TFLiteModel, op_of

__all__ = ["TensorRef", "BufferConversion", "SkippedTensor", "Plan", "make_plan", "DEQUANTIZE_MIN_VERSION", "MIN_RUNTIME_VERSION"]

DEQUANTIZE_MIN_VERSION = 3  # DEQUANTIZE with a float16 input (op_version.cc)
MIN_RUNTIME_VERSION = "1.15.0"  # the first runtime with float16 DEQUANTIZE
MIN_RUNTIME_VERSION_KEY = b"min_runtime_version"
_OP_NAMES = {v: k for k, v in BUILTIN_OPS.items()}
_TYPE_NAMES = {v: k for k, v in TENSOR_TYPES.items()}
_QUANTIZED_WEIGHT_TYPES = {TENSOR_TYPES[t] for t in ("INT8", "UINT8", "INT4") if t in TENSOR_TYPES}


@dataclass(frozen=True)
class TensorRef:
    """A tensor of the model: subgraph index, tensor index and name."""

    subgraph: int
    tensor: int
    name: str


@dataclass(frozen=True)
class BufferConversion:
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


@dataclass(frozen=True)
class SkippedTensor:
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


def make_plan(model: TFLiteModel) -> Plan:
    """The plan for ``model``; does not change it.

    >>> from tflite_fp16.reader import read_model      # doctest: +SKIP
    >>> print(make_plan(read_model("model.tflite")).describe())   # doctest: +SKIP
    """
    codes = model.operator_codes
    ops_of_codes = [op_of(code) for code in codes]
    buffers = model.buffers
    converted_by_buffer: Dict[int, List[TensorRef]] = defaultdict(list)
    readers_of_buffer: Dict[int, List[str]] = defaultdict(list)  # everything that reads a buffer
    skipped: List[SkippedTensor] = []
    sparse: List[TensorRef] = []

    for m, entry in enumerate(model.root.tables("metadata")):
        readers_of_buffer[entry.get("buffer")].append(f"metadata '{_name(entry.get('name'))}'")
    for index in model.root.ints("metadata_buffer"):
        readers_of_buffer[index].append("Model.metadata_buffer")

    for s, subgraph in enumerate(model.subgraphs):
        tensors = subgraph.tables("tensors")
        operators = subgraph.tables("operators")
        consumers: Dict[int, List[int]] = defaultdict(list)
        produced: Dict[int, int] = {}
        for o, op in enumerate(operators):
            for i in set(op.ints("inputs")):
                if i >= 0:
                    consumers[i].append(o)
            for i in op.ints("outputs"):
                produced.setdefault(i, o)
        inputs = set(subgraph.ints("inputs"))
        outputs = set(subgraph.ints("outputs"))

        def op_label(o: int) -> str:
            code = ops_of_codes[operators[o].get("opcode_index")]
            if code == BUILTIN_OPS["CUSTOM"]:
                custom = codes[operators[o].get("opcode_index")].get("custom_code") or b""
                return f"operator {o} (custom '{_name(custom)}')"
            return f"operator {o} ({_OP_NAMES.get(code, code)})"

        def is_hybrid(o: int) -> bool:
            op = operators[o]
            if ops_of_codes[op.get("opcode_index")] == DEQUANTIZE:
                return False
            quantized_weight = any(
                i >= 0
                and tensors[i].get("type") in _QUANTIZED_WEIGHT_TYPES
                and model.buffer_data(tensors[i].get("buffer")).size > 0
                for i in op.ints("inputs")
            )
            float_output = any(i >= 0 and tensors[i].get("type") == FLOAT32 for i in op.ints("outputs"))
            return quantized_weight and float_output

        for t, tensor in enumerate(tensors):
            b = tensor.get("buffer")
            data = model.buffer_data(b)
            ref = TensorRef(s, t, _name(tensor.get("name")))
            if data.size == 0:
                continue
            if tensor.get("type") != FLOAT32:
                readers_of_buffer[b].append(f"{_TYPE_NAMES.get(tensor.get('type'), 'type ' + str(tensor.get('type')))} tensor {t} of subgraph {s}")
                continue
            reason = _skip_reason(t, tensor, consumers, produced, inputs, outputs, operators, ops_of_codes, op_label, is_hybrid)
            is_sparse = tensor.has("sparsity")
            if reason is None:
                shape = tensor.ints("shape")
                expected = 4 * int(np.prod(shape, dtype=np.int64)) if not is_sparse else None
                if (expected is not None and data.size != expected) or data.size % 4:
                    raise InvalidModelError(
                        f"subgraph {s} tensor {t} '{ref.name}' is FLOAT32 of shape {shape} but its buffer {b} "
                        f"holds {data.size} bytes" + (f" (expected {expected})" if expected is not None else "")
                    )
                converted_by_buffer[b].append(ref)
                if is_sparse:
                    sparse.append(ref)
            else:
                skipped.append(SkippedTensor(ref, b, reason))
                readers_of_buffer[b].append(f"float32 tensor {t} of subgraph {s}")

    conversions = []
    for b in sorted(converted_by_buffer):
        kept_by = tuple(readers_of_buffer.get(b, ()))
        conversions.append(
            BufferConversion(
                buffer=b,
                tensors=tuple(converted_by_buffer[b]),
                elements=model.buffer_data(b).size // 4,
                new_buffer=bool(kept_by),
                kept_by=kept_by,
            )
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
    return Plan(tuple(conversions), tuple(skipped), dequantize_opcode, min_runtime, tuple(sparse))


def _skip_reason(t, tensor, consumers, produced, inputs, outputs, operators, ops_of_codes, op_label, is_hybrid) -> Optional[str]:  # type: ignore[no-untyped-def]
    if t in outputs:
        return "subgraph output (its type is part of the subgraph's interface)"
    if t in inputs:
        return "subgraph input (its type is part of the subgraph's interface)"
    if tensor.get("is_variable"):
        return "variable tensor (is_variable): the interpreter writes it"
    if t in produced:
        return f"written by {op_label(produced[t])}"
    readers = consumers.get(t, [])
    if not readers:
        return "not read by any operator"
    for o in readers:
        code = ops_of_codes[operators[o].get("opcode_index")]
        if code == BUILTIN_OPS["CUSTOM"]:
            return f"read by {op_label(o)}, whose kernel may need a constant input"
        if is_hybrid(o):
            return f"read by hybrid {op_label(o)}, whose weights are already quantized"
        if tensor.has("sparsity") and (code != DENSIFY or len(operators[o].ints("outputs")) != 1):
            return f"sparse, and read by {op_label(o)} rather than a DENSIFY with one output"
    return None
