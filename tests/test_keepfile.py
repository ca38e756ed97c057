"""Keep files round-trip any name, match exact names by a set lookup and content by a digest,
and say when an entry keeps nothing or something renamed."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tflite_builder as tb

from tflite_fp16 import InvalidInputsError, Options, rewrite
from tflite_fp16.conversion import plan as plan_module
from tflite_fp16.format.model import Table, TFLiteModel
from tflite_fp16.format.writer import write_model
from tflite_fp16.keepfile import HEADER, KeepEntry, content_digest, escape, read_keep_file, render_keep_file, unescape

HOSTILE = [
    "#starts like a comment",
    "",
    " ",
    "  padded  ",
    "\x0cform feed",
    "file\x1cseparator",
    "next\x85line",
    "line\u2028separator",
    "para\u2029graph",
    "tab\there",
    "back\\slash",
    "cr\rlf\n",
    "nul\x00",
    "escape\x1b[2J",
    "pattern*?[like]",
    "fused/a;fused/b",
    "\ufffdreplaced",
    "日本語",
    "😀",
    "\\x41 looks escaped",
]


def test_every_hostile_name_round_trips_byte_for_byte(tmp_path: Path) -> None:
    entries = [KeepEntry("exact", name, (i, 2), f"{i:016x}") for i, name in enumerate(HOSTILE)]
    entries += [KeepEntry("pattern", name) for name in HOSTILE]
    text = render_keep_file(entries, "a comment\nwith a break")
    assert text.count("\n") == len(entries) + 2  # the header, the comment, one line per entry
    path = tmp_path / "keep.txt"
    path.write_text(text, encoding="utf-8")
    assert read_keep_file(path) == tuple(entries)
    assert render_keep_file(read_keep_file(path), "a comment\nwith a break") == text
    for name in HOSTILE:
        assert unescape(escape(name)) == name and "\n" not in escape(name) and "\t" not in escape(name)
        assert len(escape(name).splitlines()) <= 1


def test_malformed_lines_are_refused_with_their_number(tmp_path: Path) -> None:
    path = tmp_path / "keep.txt"
    for line, message in [
        ("exact\tname", "needs shape= and sha256="),
        ("exact\tname\tshape=1\tsha256=xyz", "16 hex digits"),
        ("exact\tbad\\q\tshape=1\tsha256=0123456789abcdef", "unknown escape"),
        ("keep\tname", "a line is"),
    ]:
        path.write_text(f"{HEADER}\n{line}\n", encoding="utf-8")
        with pytest.raises(InvalidInputsError, match=f"line 2: .*{message}"):
            read_keep_file(path)
    path.write_bytes(HEADER.encode() + b"\n\xff\xfe\n")
    with pytest.raises(InvalidInputsError, match="not UTF-8"):
        read_keep_file(path)


def test_a_format_1_file_is_read_as_patterns(tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_text("# tflite-fp16 --auto --tolerance 0.001: 2 tensor names kept float32\nbank/a\n\nbank/b\r\n")
    assert Options(keep_from=path).keep == ("bank/a", "bank/b")


def _bank(tmp_path: Path, names: tuple[str, str]) -> Path:
    model = tb.filterbank_model()
    model.subgraphs[0].tensors[1].name, model.subgraphs[0].tensors[2].name = names
    path = tmp_path / "bank.tflite"
    path.write_bytes(tb.build(model))
    return path


def test_a_search_over_hostile_names_replays_exactly(tmp_path: Path) -> None:
    names = ("#bank a\x0c\u2028", "")
    source = _bank(tmp_path, names)
    searched, replayed, keep = tmp_path / "searched.tflite", tmp_path / "replayed.tflite", tmp_path / "keep.txt"
    report = rewrite(source, searched, auto=True, tolerance=1e-3, save_keep=keep)
    assert {t.name for c in report.search.chosen for t in c.tensors} == set(names)
    assert {e.text for e in read_keep_file(keep)} == set(names)
    replay = rewrite(source, replayed, keep_from=keep)
    assert replayed.read_bytes() == searched.read_bytes() and replay.warnings == ()
    assert replay.plan.kept_by_reason() == {"keep_name": 2}


def test_an_entry_matches_by_content_after_a_rename_and_never_keeps_changed_data(tmp_path: Path) -> None:
    source = _bank(tmp_path, ("arith.constant3", "arith.constant4"))
    keep = tmp_path / "keep.txt"
    searched = tmp_path / "searched.tflite"
    rewrite(source, searched, auto=True, tolerance=1e-3, save_keep=keep)
    # A re-export: the same weights, renumbered.
    renamed = _bank(tmp_path / "..", ("arith.constant7", "arith.constant8"))
    report = rewrite(renamed, tmp_path / "renamed.tflite", keep_from=keep)
    assert {k.name for k in report.kept} == {"arith.constant7", "arith.constant8"}
    assert any("matched tensors of other names by shape and data" in w for w in report.warnings)
    # Another model that uses the old names for other data: nothing is kept, and it says so.
    model = tb.filterbank_model(seed=5)
    model.subgraphs[0].tensors[1].name, model.subgraphs[0].tensors[2].name = "arith.constant3", "arith.constant4"
    other = tmp_path / "other.tflite"
    other.write_bytes(tb.build(model))
    changed = rewrite(other, tmp_path / "changed.tflite", keep_from=keep)
    assert changed.kept == ()
    assert sum("holds other data now" in w for w in changed.warnings) == 2


def test_entries_and_ids_that_match_nothing_are_warnings(tmp_path: Path) -> None:
    source = _bank(tmp_path, ("bank/a", "bank/b"))
    keep = tmp_path / "keep.txt"
    keep.write_text(
        render_keep_file([KeepEntry("exact", "missing", (2, 2), "0123456789abcdef"), KeepEntry("pattern", "nothing*")])
    )
    report = rewrite(source, None, keep_from=keep, keep_tensors=[(0, 1), (0, 99)])
    assert report.plan.kept_by_reason() == {"keep_tensor": 1}
    assert any("'missing'" in w and "matches no float32 constant" in w for w in report.warnings)
    assert any("keep pattern 'nothing*' matches no" in w for w in report.warnings)
    assert any("keep_tensors (0, 99) is not a float32 constant" in w for w in report.warnings)
    with pytest.raises(ValueError, match="keep_tensors"):
        Options(keep_tensors=[(0, -1)])


def _many_constants(path: Path, count: int) -> list[tuple[str, tuple[int, ...], str]]:
    """A model of ``count`` small float32 constants (4x4 weights and biases of FULLY_CONNECTED
    layers); their (name, shape, digest)."""
    rng = np.random.default_rng(0)
    buffers, named = [Table("Buffer", {})], []
    tensors = [Table("Tensor", {"shape": np.array([1, 4], "<i4"), "name": b"x"})]
    operators = []
    for layer in range(count // 2):
        for suffix, shape in (("weights", (4, 4)), ("bias", (4,))):
            data = rng.standard_normal(int(np.prod(shape))).astype("<f4")
            buffers.append(Table("Buffer", {"data": data.view(np.uint8)}))
            name = f"layer{layer}/{suffix}"
            tensors.append(
                Table("Tensor", {"shape": np.array(shape, "<i4"), "buffer": len(buffers) - 1, "name": name.encode()})
            )
            named.append((name, shape, content_digest(data)))
        tensors.append(Table("Tensor", {"shape": np.array([1, 4], "<i4"), "name": f"layer{layer}/out".encode()}))
        previous = 0 if layer == 0 else len(tensors) - 4
        operators.append(
            Table(
                "Operator",
                {
                    "opcode_index": 0,
                    "inputs": np.array([previous, len(tensors) - 3, len(tensors) - 2], "<i4"),
                    "outputs": np.array([len(tensors) - 1], "<i4"),
                },
            )
        )
    subgraph = Table(
        "SubGraph",
        {
            "tensors": tuple(tensors),
            "operators": tuple(operators),
            "inputs": np.array([0], "<i4"),
            "outputs": np.array([len(tensors) - 1], "<i4"),
        },
    )
    root = Table(
        "Model",
        {
            "version": 3,
            "operator_codes": (Table("OperatorCode", {"builtin_code": 9, "deprecated_builtin_code": 9}),),
            "subgraphs": (subgraph,),
            "buffers": tuple(buffers),
        },
    )
    write_model(TFLiteModel(root=root), path)
    return named


def test_keep_from_8000_names_is_linear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "many.tflite"
    named = _many_constants(source, 8000)
    keep = tmp_path / "keep.txt"
    keep.write_text(render_keep_file([KeepEntry("exact", n, s, d) for n, s, d in named]))
    calls = {"fnmatch": 0, "digest": 0}
    real_fnmatch, real_digest = fnmatch.fnmatchcase, plan_module.content_digest

    def counted_fnmatch(*args: Any) -> bool:
        calls["fnmatch"] += 1
        return real_fnmatch(*args)

    def counted_digest(data: np.ndarray) -> str:
        calls["digest"] += 1
        return real_digest(data)

    monkeypatch.setattr(fnmatch, "fnmatchcase", counted_fnmatch)
    monkeypatch.setattr(plan_module, "content_digest", counted_digest)
    report = rewrite(source, None, keep_from=keep)
    assert report.plan.kept_by_reason() == {"keep_name": 8000} and report.tensors_converted == 0
    # A set lookup per name and one digest per constant: no pattern is tried on any tensor.
    assert calls == {"fnmatch": 0, "digest": 8000}
