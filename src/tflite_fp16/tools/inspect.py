"""What is in a ``.tflite`` file, at a glance (``tflite-fp16 inspect MODEL [--json]``).

:func:`inspect_file` returns JSON-ready data (documented in the README);
:func:`render` turns it into a compact, aligned summary for a terminal.

>>> print(render(inspect_file("examples/filterbank.tflite")).splitlines()[-1])
rewrite                4 tensors to float16, about 656 B saved
"""

from __future__ import annotations

import io
import os
import zipfile
from collections import Counter, defaultdict
from typing import Any, Union

from ..conversion.plan import make_plan
from ..errors import RewriteError
from ..format.model import BUILTIN_OPS, DEQUANTIZE, FLOAT16, OP_NAMES, TYPE_NAMES, Table, TFLiteModel, op_of
from ..format.paths import existing_input
from ..format.reader import open_model, parse_model, parse_table
from ..options import Options
from ..schema import CONVERSION_SCHEMA
from ..text import counted, printable, quote
from ..version import __version__
from ..work import gc_paused, thread_pool

__all__ = ["inspect_bytes", "inspect_file", "inspect_model", "render"]

PathLike = Union[str, "os.PathLike[str]"]
_CUSTOM = BUILTIN_OPS["CUSTOM"]
_CONTROL_FLOW = {BUILTIN_OPS[n] for n in ("WHILE", "IF", "CALL_ONCE", "CALL") if n in BUILTIN_OPS}
_MODES = {v: k for k, v in CONVERSION_SCHEMA.enums["ModelOptimizationMode"].items()}
_MODEL_TYPES = {v: k for k, v in CONVERSION_SCHEMA.enums["ModelType"].items()}


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace")


def _operator_name(model: TFLiteModel, index: int) -> str:
    code = model.operator_codes[index]
    op = op_of(code)
    if op == _CUSTOM:
        return f"CUSTOM:{_text(code.get('custom_code'))}"
    return OP_NAMES.get(op, f"operator {op}")


def _decode_metadata(name: str, data: bytes) -> Any:
    """The value of a metadata entry of a known format, or its text when short and printable, or None."""
    if name in ("min_runtime_version", "reduced_precision_support"):
        return data.split(b"\0", 1)[0].decode("ascii", "replace")
    if name == "CONVERSION_METADATA":
        try:
            table = parse_table(data, CONVERSION_SCHEMA)
        except RewriteError as error:
            return {"error": str(error)}
        environment = table.fields.get("environment")
        options = table.fields.get("options")
        value: dict[str, Any] = {}
        if environment is not None:
            value["tensorflow_version"] = _text(environment.fields.get("tensorflow_version"))
            value["api_version"] = environment.get("api_version")
            value["model_type"] = _MODEL_TYPES.get(environment.get("model_type"), environment.get("model_type"))
            value["model_hash"] = environment.get("model_hash")
        if options is not None:
            value["optimization_modes"] = [_MODES.get(m, m) for m in options.ints("model_optimization_modes")]
            value["allow_custom_ops"] = options.get("allow_custom_ops")
        return value
    return _short_text(data)


SHORT_VALUE = 64  # bytes: a metadata entry this short that is text is shown (litert-torch's flags, say)


def _short_text(data: bytes) -> str | None:
    """A short metadata value that is printable UTF-8 text (trailing zero bytes aside), else None."""
    text = data.rstrip(b"\0")
    if not text or len(text) > SHORT_VALUE:
        return None
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if decoded.isprintable() else None


def _appended(model: TFLiteModel) -> dict[str, Any]:
    trailing = bytes(model.trailing)
    files: list[str] | None = None
    if trailing:
        try:
            with zipfile.ZipFile(io.BytesIO(trailing)) as archive:
                files = archive.namelist()
        except (zipfile.BadZipFile, ValueError, OSError):
            files = None
    return {"bytes": len(trailing), "zip_files": files}


def _shape(tensor: Table) -> list[int]:
    signature = tensor.ints("shape_signature")
    return signature if signature else tensor.ints("shape")


def inspect_model(model: TFLiteModel, size: int, options: Options | None = None) -> dict[str, Any]:
    """Everything :func:`inspect_file` reports, for a model already read."""
    root = model.root
    subgraphs = model.subgraphs
    codes = model.operator_codes
    ops_of_codes = [op_of(code) for code in codes]
    info: dict[str, Any] = {
        "size": size,
        "schema_version": root.get("version"),
        "description": _text(root.fields.get("description")),
        "layout": "offset" if model.external else "normal",
        "buffers_after_flatbuffer": model.external,
        "appended": _appended(model),
    }
    info["subgraphs"] = [
        {
            "index": s,
            "name": _text(sg.fields.get("name")),
            "tensors": len(sg.tables("tensors")),
            "operators": len(sg.tables("operators")),
            "inputs": len(sg.ints("inputs")),
            "outputs": len(sg.ints("outputs")),
        }
        for s, sg in enumerate(subgraphs)
    ]
    signatures = []
    for signature in root.tables("signature_defs"):
        s = signature.get("subgraph_index")
        tensors = subgraphs[s].tables("tensors") if s < len(subgraphs) else ()

        def describe(entry: Any, tensors: tuple[Any, ...] = tensors) -> dict[str, Any]:
            tensor = tensors[entry.get("tensor_index")]
            return {
                "name": _text(entry.fields.get("name")),
                "tensor": entry.get("tensor_index"),
                "shape": _shape(tensor),
                "type": TYPE_NAMES.get(tensor.get("type"), tensor.get("type")),
            }

        signatures.append(
            {
                "key": _text(signature.fields.get("signature_key")),
                "subgraph": s,
                "inputs": [describe(e) for e in signature.tables("inputs")],
                "outputs": [describe(e) for e in signature.tables("outputs")],
            }
        )
    info["signatures"] = signatures

    histogram: Counter[tuple[str, int]] = Counter()
    for sg in subgraphs:
        for op in sg.tables("operators"):
            index = op.get("opcode_index")
            histogram[(_operator_name(model, index), codes[index].get("version"))] += 1
    info["operators"] = [
        {"operator": name, "version": version, "count": count}
        for (name, version), count in sorted(histogram.items(), key=lambda item: (-item[1], item[0]))
    ]

    by_type: dict[str, dict[str, int]] = defaultdict(lambda: {"tensors": 0, "constants": 0, "constant_bytes": 0})
    seen_buffers: dict[str, set[int]] = defaultdict(set)
    features: dict[str, Any] = {
        "sparse_tensors": 0,
        "variables": 0,
        "control_flow_operators": [],
        "quantization": Counter(),
        "misaligned_buffers": 0,
        "external_tensors": 0,
        "external_buffers": len(root.tables("external_buffers")),
        "external_buffer_groups": [_text(g.get("name")) for g in root.tables("external_buffer_groups")],
    }
    float16_into_dequantize = 0
    for sg in subgraphs:
        tensors = sg.tables("tensors")
        readers: dict[int, list[int]] = defaultdict(list)
        operators = sg.tables("operators")
        for o, op in enumerate(operators):
            for i in op.ints("inputs"):
                if i >= 0:
                    readers[i].append(o)
            if ops_of_codes[op.get("opcode_index")] in _CONTROL_FLOW:
                features["control_flow_operators"].append(OP_NAMES.get(ops_of_codes[op.get("opcode_index")]))
        for t, tensor in enumerate(tensors):
            type_name = TYPE_NAMES.get(tensor.get("type"), f"type {tensor.get('type')}")
            entry = by_type[type_name]
            entry["tensors"] += 1
            b = tensor.get("buffer")
            data = model.buffer_data(b)
            if data.size:
                entry["constants"] += 1
                if b not in seen_buffers[type_name]:
                    seen_buffers[type_name].add(b)
                    entry["constant_bytes"] += int(data.size)
                if (
                    tensor.get("type") == FLOAT16
                    and readers.get(t)
                    and all(ops_of_codes[operators[o].get("opcode_index")] == DEQUANTIZE for o in readers[t])
                ):
                    float16_into_dequantize += 1
            if tensor.has("sparsity"):
                features["sparse_tensors"] += 1
            if tensor.get("is_variable"):
                features["variables"] += 1
            if tensor.get("external_buffer"):
                features["external_tensors"] += 1
            quantization = tensor.fields.get("quantization")
            if quantization is not None:
                if quantization.has("details"):
                    features["quantization"][quantization.fields["details"].name] += 1
                scales = len(quantization.fields.get("scale", ()))
                if scales == 1:
                    features["quantization"][f"per-tensor {type_name}"] += 1
                elif scales > 1:
                    features["quantization"][f"per-axis {type_name}"] += 1
    for b in range(len(model.buffers)):
        data = model.buffer_data(b)
        offset = model.offset_of(data)
        if data.size and offset is not None and offset % 16:
            features["misaligned_buffers"] += 1
    features["control_flow_operators"] = sorted(set(features["control_flow_operators"]))
    features["quantization"] = dict(sorted(features["quantization"].items()))
    info["tensors_by_type"] = dict(sorted(by_type.items()))
    info["float16_constants_feeding_dequantize"] = float16_into_dequantize
    info["features"] = features

    metadata: list[dict[str, Any]] = []
    for item in root.tables("metadata"):
        name = _text(item.fields.get("name"))
        raw = model.buffer_data(item.get("buffer")).tobytes()
        metadata.append(
            {"name": name, "buffer": item.get("buffer"), "bytes": len(raw), "value": _decode_metadata(name, raw)}
        )
    info["metadata"] = metadata

    try:
        with thread_pool() as executor:
            plan = make_plan(model, options or Options(), executor)
        info["rewrite"] = {
            "tensors_converted": len(plan.tensors),
            "buffers_converted": len(plan.conversions),
            "bytes_saved": 2 * plan.converted_elements,
            "kept_by_reason": plan.kept_by_reason(),
            "nothing_to_convert": plan.nothing_to_convert() or None,
        }
    except RewriteError as error:
        info["rewrite"] = {"error": str(error)}
    return info


def inspect_bytes(data: bytes | bytearray | memoryview, options: Options | None = None) -> dict[str, Any]:
    """:func:`inspect_file` for a model held in memory (``file`` is ``"<bytes>"``)."""
    view = memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    view = view.cast("B")
    with gc_paused():
        info = inspect_model(parse_model(view), len(view), options)
    return {"tool": "tflite-fp16", "version": __version__, "file": "<bytes>", **info}


def inspect_file(path: PathLike, options: Options | None = None) -> dict[str, Any]:
    """What is in the model at ``path`` (JSON-ready data; see the README's ``inspect`` section).

    >>> inspect_file("examples/small_cnn.tflite")["rewrite"]["tensors_converted"]
    10
    """
    path = existing_input(path)
    size = os.path.getsize(path)
    with gc_paused(), open_model(path) as model:
        info = inspect_model(model, size, options)
    return {"tool": "tflite-fp16", "version": __version__, "file": os.fspath(path), **info}


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render(info: dict[str, Any], width: int = 100) -> str:
    """A compact, aligned summary of :func:`inspect_file`'s data."""
    import textwrap

    lines: list[str] = []

    def row(label: str, value: str) -> None:
        value = printable(value)  # whatever came from the file and was not quoted: no control bytes
        for i, part in enumerate(textwrap.wrap(value, width - 23, break_on_hyphens=False) or [""]):
            lines.append(f"{label if i == 0 else '':<22} {part}")

    row("file", f"{quote(info['file'])}, {_bytes(info['size'])} ({info['size']:,} bytes)")
    row("schema", f"version {info['schema_version']}, description {quote(info['description'])}")
    layout = (
        "normal (buffer data inside the flatbuffer)"
        if info["layout"] == "normal"
        else (f"offset ({info['buffers_after_flatbuffer']} buffers' data after the flatbuffer)")
    )
    row("layout", layout)
    appended = info["appended"]
    if appended["bytes"]:
        files = appended["zip_files"]
        row(
            "appended",
            f"{appended['bytes']:,} bytes"
            + (
                f", a zip of {len(files)}: {', '.join(quote(f) for f in files[:6])}"
                if files is not None
                else ", not a zip"
            ),
        )
    for sg in info["subgraphs"]:
        row(
            f"subgraph {sg['index']}",
            f"{quote(sg['name'])}: {counted(sg['tensors'], 'tensor')}, {counted(sg['operators'], 'operator')}, "
            f"{counted(sg['inputs'], 'input')}, {counted(sg['outputs'], 'output')}",
        )
    for signature in info["signatures"]:

        def io_list(entries: list[dict[str, Any]]) -> str:
            return ", ".join(f"{quote(e['name'])} {e['type']}{e['shape']}" for e in entries)

        row(
            f"signature {quote(signature['key'])}",
            f"({io_list(signature['inputs'])}) -> ({io_list(signature['outputs'])})",
        )
    row("operators", ", ".join(f"{o['operator']} v{o['version']} x{o['count']}" for o in info["operators"]) or "none")
    for type_name, entry in info["tensors_by_type"].items():
        constants = (
            f", {counted(entry['constants'], 'constant')}, {_bytes(entry['constant_bytes'])}"
            if entry["constants"]
            else ""
        )
        row(f"  {type_name}", f"{counted(entry['tensors'], 'tensor')}{constants}")
    if info["float16_constants_feeding_dequantize"]:
        row("float16 weights", f"{info['float16_constants_feeding_dequantize']} float16 constants feed DEQUANTIZE")
    for entry in info["metadata"]:
        value = entry["value"]
        if value is None:
            shown = ""
        elif isinstance(value, str):
            shown = ": " + quote(value)
        elif "error" in value:
            shown = ": unreadable"
        else:
            modes = ", ".join(str(m) for m in value.get("optimization_modes", [])) or "no optimization"
            shown = f": TensorFlow {value.get('tensorflow_version')}, {value.get('model_type')}, {modes}"
        row("metadata", f"{quote(entry['name'])} ({entry['bytes']} bytes){shown}")
    features = info["features"]
    found = []
    if features["sparse_tensors"]:
        found.append(f"{features['sparse_tensors']} sparse tensors")
    if features["variables"]:
        found.append(f"{features['variables']} variables")
    if features["control_flow_operators"]:
        found.append("control flow (" + ", ".join(features["control_flow_operators"]) + ")")
    if features["quantization"]:
        found.append("quantization (" + ", ".join(f"{k} x{v}" for k, v in features["quantization"].items()) + ")")
    if features["external_tensors"] or features["external_buffers"]:
        groups = ", ".join(quote(g) for g in features["external_buffer_groups"])
        found.append(
            f"{features['external_tensors']} tensors with data in {features['external_buffers']} external buffers"
            + (f" ({groups})" if groups else "")
        )
    if features["misaligned_buffers"]:
        found.append(f"{features['misaligned_buffers']} buffers not 16-byte aligned")
    row("features", ", ".join(found) if found else "none of note")
    rewrite = info["rewrite"]
    if "error" in rewrite:
        row("rewrite", f"cannot: {rewrite['error']}")
    elif rewrite["nothing_to_convert"]:
        row("rewrite", rewrite["nothing_to_convert"])
    else:
        kept = ", ".join(f"{n} {r}" for r, n in rewrite["kept_by_reason"].items())
        row(
            "rewrite",
            f"{rewrite['tensors_converted']} tensors to float16, about {_bytes(rewrite['bytes_saved'])} saved"
            + (f"; kept float32: {kept}" if kept else ""),
        )
    return "\n".join(lines)
