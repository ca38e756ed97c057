"""Where the error enters: the tensors two models share, paired, and their errors put in
execution order with the operators that write them and the constants those read.

Our rewrite keeps every original tensor's index, so the tensors pair up by index (the
name checks it); a file converted elsewhere pairs by name, where the name is unique.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ..format.model import FLOAT16, FLOAT32, OP_NAMES, TFLiteModel, op_of
from ..format.reader import open_model, parse_model
from .results import LayerComparison
from .session import ModelSource

__all__ = ["Graph", "layer_comparisons", "pair_tensors", "read_graph"]


class Graph(NamedTuple):
    """What the layer comparison needs of one subgraph of a model."""

    names: tuple[str, ...]
    types: tuple[int, ...]
    constants: frozenset[int]  # tensors with buffer data
    operators: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (operator name, inputs, outputs)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _graph(model: TFLiteModel, subgraph: int) -> Graph:
    codes = [op_of(code) for code in model.operator_codes]
    table = model.subgraphs[subgraph]
    tensors = table.tables("tensors")
    names = tuple((t.get("name") or b"").decode("utf-8", "replace") for t in tensors)
    constants = frozenset(i for i, t in enumerate(tensors) if model.buffer_data(t.get("buffer")).size)
    operators = tuple(
        (
            OP_NAMES.get(codes[op.get("opcode_index")], f"operator {codes[op.get('opcode_index')]}"),
            tuple(op.ints("inputs")),
            tuple(op.ints("outputs")),
        )
        for op in table.tables("operators")
    )
    return Graph(
        names,
        tuple(t.get("type") for t in tensors),
        constants,
        operators,
        tuple(table.ints("inputs")),
        tuple(table.ints("outputs")),
    )


def read_graph(source: ModelSource, subgraph: int) -> Graph:
    """Subgraph ``subgraph`` of the model at ``source`` (read with the bounded reader)."""
    if source[0] == "bytes":
        return _graph(parse_model(source[1]), subgraph)
    with open_model(source[1]) as model:
        return _graph(model, subgraph)


def pair_tensors(original: Graph, converted: Graph) -> list[tuple[int, int]]:
    """(original index, converted index) of every tensor both have: the same index and name, or
    else the same unique name."""
    by_name: dict[str, int] = {}
    repeated = set()
    for index, name in enumerate(converted.names):
        if name in by_name:
            repeated.add(name)
        by_name[name] = index
    pairs = []
    for index, name in enumerate(original.names):
        if index < len(converted.names) and converted.names[index] == name:
            pairs.append((index, index))
        elif name and name in by_name and name not in repeated:
            pairs.append((index, by_name[name]))
    return pairs


def layer_comparisons(
    original: Graph,
    converted: Graph,
    subgraph: int,
    pairs: Sequence[tuple[int, int]],
    errors: Sequence[tuple[float, float, int] | None],
) -> tuple[LayerComparison, ...]:
    """The tensors compared, in execution order: the subgraph's inputs, then each operator's
    outputs, with the largest error among the operator's non-constant inputs and the constants
    it reads (float16 in the converted model, or kept float32)."""
    paired = dict(pairs)
    error_of: Mapping[int, tuple[float, float, int]] = {a: e for (a, _), e in zip(pairs, errors) if e is not None}
    found: list[LayerComparison] = []
    for t in original.inputs:
        if t in error_of:
            rel, max_abs, nonfinite = error_of[t]
            found.append(LayerComparison(subgraph, t, original.names[t], "input", rel, max_abs, nonfinite, 0.0, (), ()))
    for number, (name, inputs, outputs) in enumerate(original.operators):
        constants = [i for i in inputs if i >= 0 and i in original.constants]
        float16 = tuple(original.names[i] for i in constants if i in paired and converted.types[paired[i]] == FLOAT16)
        float32 = tuple(
            original.names[i]
            for i in constants
            if i in paired and original.types[i] == FLOAT32 and converted.types[paired[i]] == FLOAT32
        )
        sources = tuple(i for i in inputs if i >= 0 and i not in original.constants)
        input_error = max((error_of[i][0] for i in sources if i in error_of), default=0.0)
        for t in outputs:
            if t in error_of:
                rel, max_abs, nonfinite = error_of[t]
                found.append(
                    LayerComparison(
                        subgraph,
                        t,
                        original.names[t],
                        f"{number} {name}",
                        rel,
                        max_abs,
                        nonfinite,
                        input_error,
                        tuple(dict.fromkeys(float16)),
                        tuple(dict.fromkeys(float32)),
                        sources,
                        tuple(
                            dict.fromkeys(i for i in constants if i in paired and converted.types[paired[i]] == FLOAT16)
                        ),
                    )
                )
    return tuple(found)
