"""Random valid models: the rewrite converts exactly what the rule says, keeps the rest."""

from __future__ import annotations

from pathlib import Path

import oracle
import strategies
import tflite_builder as tb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tflite_fp16 import rewrite

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


OPTIONS = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "keep": st.lists(st.sampled_from(["s0_const1", "*const2*", "s1_*", "nothing"]), max_size=2),
            "min_elements": st.sampled_from([0, 2, 5]),
            "custom_op_inputs": st.booleans(),
            "skip_ops": st.lists(st.sampled_from(["ADD", "MUL", "CUSTOM:MyCustomOp", "CUSTOM:other"]), max_size=2),
            "lossy": st.sampled_from(["keep", "convert"]),
            "max_cast_error": st.sampled_from([1e-3, 1e-5, 0.5]),
        }
    ),
)


@SETTINGS
@given(strategies.models(), st.sampled_from(["auto", "offset"]), OPTIONS)
def test_rewrite_invariants(tmp_path: Path, description: tb.Model, layout: str, options: dict) -> None:  # type: ignore[type-arg]
    source = tb.build(description)
    path_in, path_out, path_again = tmp_path / "in.tflite", tmp_path / "out.tflite", tmp_path / "again.tflite"
    path_in.write_bytes(source)
    report = rewrite(path_in, path_out, layout=layout, **options)
    output = path_out.read_bytes()

    converted = oracle.check_rewrite(source, output, **options)
    assert report.tensors_converted == len(converted)
    assert output.endswith(description.trailing)
    assert path_in.read_bytes() == source, "the input was modified"

    # Idempotent: the output rewritten again (in the same layout) is byte-identical.
    rewrite(path_out, path_again, layout=layout, **options)
    assert path_again.read_bytes() == output
    # Deterministic: the same input gives the same bytes.
    rewrite(path_in, path_again, layout=layout, **options)
    assert path_again.read_bytes() == output


@SETTINGS
@given(strategies.models())
def test_shared_buffers_never_change_what_others_read(tmp_path: Path, description: tb.Model) -> None:
    source = tb.build(description)
    (tmp_path / "in.tflite").write_bytes(source)
    rewrite(tmp_path / "in.tflite", tmp_path / "out.tflite")
    a = oracle.tflite.Model.GetRootAs(source, 0)
    b = oracle.tflite.Model.GetRootAs((tmp_path / "out.tflite").read_bytes(), 0)
    converted = oracle.expected_conversions(a)
    # Every tensor that is not converted reads exactly its old bytes; so does every metadata entry but min_runtime_version.
    for s in range(a.SubgraphsLength()):
        for t in range(a.Subgraphs(s).TensorsLength()):
            if (s, t) not in converted:
                before = oracle.buffer_data(a, a.Subgraphs(s).Tensors(t).Buffer())
                after = oracle.buffer_data(b, b.Subgraphs(s).Tensors(t).Buffer())
                assert before == after
    # Converted tensors that shared a buffer still share one.
    groups: dict = {}
    for s, t in converted:
        groups.setdefault(a.Subgraphs(s).Tensors(t).Buffer(), set()).add(b.Subgraphs(s).Tensors(t).Buffer())
    assert all(len(g) == 1 for g in groups.values())
    assert len({next(iter(g)) for g in groups.values()}) == len(groups)
