"""Synthetic float32 models for the benchmarks, written with tflite_fp16's own writer.

Each is a runnable chain of FULLY_CONNECTED layers, so LiteRT can check the
converted model's outputs against the float32 model's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tflite_fp16.format.model import BUILTIN_OPS, Table, TFLiteModel
from tflite_fp16.format.writer import serialize_table, write_model

FULLY_CONNECTED = BUILTIN_OPS["FULLY_CONNECTED"]


def _int32(values: list[int]) -> np.ndarray:
    return np.array(values, dtype="<i4")


def fc_chain(
    path: Path, width: int, layers: int, *, layout: str = "auto", distinct: bool = False, seed: int = 0
) -> int:
    """``layers`` FULLY_CONNECTED layers of ``width`` x ``width`` weights (+ bias).

    With ``distinct`` every layer has its own random weights; otherwise all
    layers share one array in memory (written once per layer, so the file has
    its full size) and the model is built in seconds with little memory.
    Returns the file size.
    """
    rng = np.random.default_rng(seed)
    scale = np.float32(1.0 / np.sqrt(width))

    def weights() -> np.ndarray:
        return (rng.standard_normal((width, width), dtype=np.float32) * scale).reshape(-1).view(np.uint8)

    shared = None if distinct else weights()
    buffers = [Table("Buffer", {})]
    tensors = [Table("Tensor", {"shape": _int32([1, width]), "type": 0, "buffer": 0, "name": b"input"})]
    operators = []
    for layer in range(layers):
        w = shared if shared is not None else weights()
        b = (rng.standard_normal(width, dtype=np.float32) * np.float32(0.1)).view(np.uint8)
        buffers.append(Table("Buffer", {"data": w}))
        tensors.append(
            Table("Tensor", {"shape": _int32([width, width]), "buffer": len(buffers) - 1, "name": f"w{layer}".encode()})
        )
        buffers.append(Table("Buffer", {"data": b}))
        tensors.append(
            Table("Tensor", {"shape": _int32([width]), "buffer": len(buffers) - 1, "name": f"b{layer}".encode()})
        )
        tensors.append(Table("Tensor", {"shape": _int32([1, width]), "name": f"h{layer}".encode()}))
        previous = 0 if layer == 0 else len(tensors) - 4
        operators.append(
            Table(
                "Operator",
                {
                    "opcode_index": 0,
                    "inputs": _int32([previous, len(tensors) - 3, len(tensors) - 2]),
                    "outputs": _int32([len(tensors) - 1]),
                },
            )
        )
    return _write(path, tensors, operators, buffers, layout)


def many_small(path: Path, constants: int, *, seed: int = 0) -> int:
    """``constants`` small float32 constants read by ``constants // 2`` FULLY_CONNECTED ops (4x4 weights + bias)."""
    rng = np.random.default_rng(seed)
    buffers = [Table("Buffer", {})]
    tensors = [Table("Tensor", {"shape": _int32([1, 4]), "buffer": 0, "name": b"input"})]
    operators = []
    for layer in range(constants // 2):
        w = (rng.standard_normal(16, dtype=np.float32) * np.float32(0.5)).view(np.uint8)
        b = rng.standard_normal(4, dtype=np.float32).view(np.uint8)
        buffers += [Table("Buffer", {"data": w}), Table("Buffer", {"data": b})]
        tensors += [
            Table(
                "Tensor",
                {"shape": _int32([4, 4]), "buffer": len(buffers) - 2, "name": f"layer{layer}/weights".encode()},
            ),
            Table("Tensor", {"shape": _int32([4]), "buffer": len(buffers) - 1, "name": f"layer{layer}/bias".encode()}),
            Table("Tensor", {"shape": _int32([1, 4]), "name": f"layer{layer}/output".encode()}),
        ]
        previous = 0 if layer == 0 else len(tensors) - 4
        operators.append(
            Table(
                "Operator",
                {
                    "opcode_index": 0,
                    "inputs": _int32([previous, len(tensors) - 3, len(tensors) - 2]),
                    "outputs": _int32([len(tensors) - 1]),
                    "builtin_options_type": 8,
                    "builtin_options": Table("FullyConnectedOptions", {"fused_activation_function": 3}),
                },
            )
        )
    return _write(path, tensors, operators, buffers, "auto")


def many_subgraphs(path: Path, count: int, *, seed: int = 0) -> int:
    """``count`` subgraphs, each y = FULLY_CONNECTED(x, 4x4 weights) with its own constant
    (as models of many small functions, or a WHILE/IF-heavy graph, have)."""
    rng = np.random.default_rng(seed)
    buffers = [Table("Buffer", {})]
    subgraphs = []
    for s in range(count):
        buffers.append(
            Table("Buffer", {"data": (rng.standard_normal(16, dtype=np.float32) * np.float32(0.5)).view(np.uint8)})
        )
        tensors = (
            Table("Tensor", {"shape": _int32([1, 4]), "buffer": 0, "name": b"x"}),
            Table("Tensor", {"shape": _int32([4, 4]), "buffer": len(buffers) - 1, "name": f"f{s}/weights".encode()}),
            Table("Tensor", {"shape": _int32([1, 4]), "buffer": 0, "name": b"y"}),
        )
        operators = (Table("Operator", {"opcode_index": 0, "inputs": _int32([0, 1, -1]), "outputs": _int32([2])}),)
        subgraphs.append(
            Table(
                "SubGraph",
                {
                    "tensors": tensors,
                    "inputs": _int32([0]),
                    "outputs": _int32([2]),
                    "operators": operators,
                    "name": f"f{s}".encode(),
                },
            )
        )
    root = Table(
        "Model",
        {
            "version": 3,
            "operator_codes": (
                Table(
                    "OperatorCode",
                    {"deprecated_builtin_code": FULLY_CONNECTED, "version": 1, "builtin_code": FULLY_CONNECTED},
                ),
            ),
            "subgraphs": tuple(subgraphs),
            "description": b"tflite-fp16 benchmark model",
            "buffers": tuple(buffers),
        },
    )
    write_model(TFLiteModel(root=root), path)
    return os.path.getsize(path)


def _write(path: Path, tensors: list[Table], operators: list[Table], buffers: list[Table], layout: str) -> int:
    subgraph = Table(
        "SubGraph",
        {
            "tensors": tuple(tensors),
            "inputs": _int32([0]),
            "outputs": _int32([len(tensors) - 1]),
            "operators": tuple(operators),
            "name": b"main",
        },
    )
    signature = Table(
        "SignatureDef",
        {
            "inputs": (Table("TensorMap", {"name": b"input", "tensor_index": 0}),),
            "outputs": (Table("TensorMap", {"name": b"output", "tensor_index": len(tensors) - 1}),),
            "signature_key": b"serving_default",
        },
    )
    version = np.frombuffer(b"1.14.0".ljust(16, b"\0"), np.uint8)
    # Like every model TensorFlow converts, CONVERSION_METADATA, whose hash the rewrite recomputes.
    conversion = serialize_table(
        Table(
            "ConversionMetadata",
            {
                "environment": Table(
                    "Environment", {"tensorflow_version": b"2.21.0", "api_version": 2, "model_type": 2, "model_hash": 1}
                ),
                "options": Table("ConversionOptions", {"model_optimization_modes": ()}),
            },
        )
    )
    buffers = buffers + [
        Table("Buffer", {"data": version}),
        Table("Buffer", {"data": np.frombuffer(conversion, np.uint8)}),
    ]
    root = Table(
        "Model",
        {
            "version": 3,
            "operator_codes": (
                Table(
                    "OperatorCode",
                    {"deprecated_builtin_code": FULLY_CONNECTED, "version": 1, "builtin_code": FULLY_CONNECTED},
                ),
            ),
            "subgraphs": (subgraph,),
            "description": b"tflite-fp16 benchmark model",
            "buffers": tuple(buffers),
            "metadata": (
                Table("Metadata", {"name": b"min_runtime_version", "buffer": len(buffers) - 2}),
                Table("Metadata", {"name": b"CONVERSION_METADATA", "buffer": len(buffers) - 1}),
            ),
            "signature_defs": (signature,),
        },
    )
    write_model(TFLiteModel(root=root), path, **({"layout": layout} if layout != "auto" else {}))
    return os.path.getsize(path)
