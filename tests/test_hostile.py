"""Hostile files and faults: shared objects, limits, data after the flatbuffer, the checks
LiteRT's verifier makes, output paths, signals, durability and caches."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import hostile
import numpy as np
import oracle
import pytest
import runtime
import tflite
import tflite_builder as tb

from tflite_fp16 import (
    InputNotFoundError,
    InvalidModelError,
    OutputError,
    RewriteError,
    UnsupportedModelError,
    rewrite,
)
from tflite_fp16.format import paths as output_module
from tflite_fp16.format import writer
from tflite_fp16.format.reader import parse_model
from tflite_fp16.schema import SCHEMA

DATA = Path(__file__).resolve().parent / "data"
TINY = (DATA / "tiny_mlp.fp32.tflite").read_bytes()


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".tflite-fp16")]


def command(*args: str, env: Any = None) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        [sys.executable, "-m", "tflite_fp16", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


# ---------------------------------------------------------------- amplification through shared objects


@pytest.mark.parametrize("make", [hostile.repeated_subgraph, hostile.shared_shape, hostile.shared_name])
def test_shared_objects_that_expand_are_refused_quickly(tmp_path: Path, make: Any) -> None:
    source = tmp_path / "in.tflite"
    source.write_bytes(make())
    start = time.perf_counter()
    with pytest.raises(InvalidModelError, match=r"expands beyond .* objects through shared references"):
        rewrite(source, tmp_path / "out.tflite")
    assert time.perf_counter() - start < 5  # the 80 KB file expands to 10**8 tables: refused at once
    with pytest.raises(InvalidModelError, match="shared references"):
        rewrite(source, None)  # a dry run pays no more
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tflite"]


def test_one_data_vector_behind_many_buffers_is_converted_once_and_written_once(tmp_path: Path) -> None:
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(hostile.chain_sharing_one_data_vector(buffers=300, width=20_000))
    report = rewrite(source, out)
    assert report.tensors_converted == 300
    # 300 x 80 KB of float32 when expanded; the output holds the float16 data once.
    assert out.stat().st_size < source.stat().st_size
    model = tflite.Model.GetRootAs(out.read_bytes(), 0)
    positions = {oracle.buffer_data_offset(model, model.Subgraphs(0).Tensors(1 + i).Buffer()) for i in range(300)}
    assert len(positions) == 1
    oracle.check_rewrite(source.read_bytes(), out.read_bytes())
    for resolver in runtime.RESOLVERS:
        before, after = runtime.run(source, resolver), runtime.run(out, resolver)
        assert before.keys() == after.keys()
        for key in before:  # 300 additions of the same constant, each rounded to float16
            np.testing.assert_allclose(after[key], before[key], rtol=1e-2, atol=1e-2)


def test_a_subgraph_listed_twice_stays_one_subgraph(tmp_path: Path) -> None:
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(hostile.shared_subgraph_with_a_constant(copies=3))
    report = rewrite(source, out)
    assert report.tensors_converted == 3
    model = tflite.Model.GetRootAs(out.read_bytes(), 0)
    assert model.SubgraphsLength() == 3
    assert len({model.Subgraphs(i)._tab.Pos for i in range(3)}) == 1, "the output must share the subgraph too"
    oracle.check_rewrite(source.read_bytes(), out.read_bytes())
    assert rewrite(out, tmp_path / "again.tflite").unchanged


def test_output_over_litert_table_limit_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200,000 small constants load in LiteRT, but their rewrite would pass 1,000,000 tables:
    refused, not written. (A stand-in limit keeps the test small; the benchmark shows the real one.)"""
    monkeypatch.setattr(
        writer, "MAX_TABLES", 60
    )  # the output has 67 tables (with the new metadata entry and its buffer); the input 47
    source = DATA / "tiny_mlp.fp32.tflite"
    with pytest.raises(RewriteError, match="more than LiteRT's verifier accepts"):
        rewrite(source, tmp_path / "out.tflite")
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(writer, "MAX_TABLES", 67)
    assert rewrite(source, tmp_path / "out.tflite").tensors_converted == 6


def test_reader_counts_every_use_of_a_table_like_the_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    from tflite_fp16.format import reader

    monkeypatch.setattr(reader, "MAX_TABLES", 50)
    with pytest.raises(InvalidModelError, match="more than 50 tables"):
        parse_model(hostile.repeated_subgraph(subgraphs=30, tensor_references=2))
    parse_model(hostile.repeated_subgraph(subgraphs=10, tensor_references=2))  # 10 x 3 + model, buffers, code


# ---------------------------------------------------------------- data after the flatbuffer


def with_zip(content: bytes) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("labels.txt", "cat\ndog\n" * 50)
    return content + archive.getvalue()


def test_empty_buffer_pointing_into_the_appended_zip_cuts_nothing(tmp_path: Path) -> None:
    model = tb.add_model()
    model.buffers.append(None)
    model.external_buffers[len(model.buffers) - 1] = (10**6, 0)  # size 0: no data, wherever it points
    content = with_zip(tb.build(model))
    zip_start = content.index(b"PK\x03\x04")
    model.external_buffers[len(model.buffers) - 1] = (zip_start + 40, 0)
    content = with_zip(tb.build(model))
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(content)
    rewrite(source, out)
    with zipfile.ZipFile(out) as z:
        assert z.read("labels.txt") == b"cat\ndog\n" * 50
    assert out.read_bytes().endswith(content[content.index(b"PK\x03\x04") :])


def test_buffer_range_inside_the_appended_data_is_refused(tmp_path: Path) -> None:
    model = tb.add_model()
    model.buffers.append(None)
    model.external_buffers[len(model.buffers) - 1] = (10**6, 16)
    head = tb.build(model)
    content = with_zip(head)
    model.external_buffers[len(model.buffers) - 1] = (len(head) + 64, 16)
    content = with_zip(tb.build(model))
    with pytest.raises(UnsupportedModelError, match="belong to no buffer"):
        parse_model(content)


def test_buffer_range_inside_the_flatbuffer_is_refused() -> None:
    model = tb.add_model()
    model.buffers.append(None)
    model.external_buffers[len(model.buffers) - 1] = (8, 16)
    with pytest.raises(InvalidModelError, match="inside the flatbuffer"):
        parse_model(tb.build(model))


@pytest.mark.parametrize(
    "appended, kept",
    [
        (b"\0" * 10 + b"DATA", True),  # leading zeros of appended data are data
        (b"\0" * 40, True),  # so are many zeros
        (b"\0" * 31, False),  # a short run of zeros is padding
        (b"x", True),
    ],
)
def test_appended_bytes_are_kept_whole(tmp_path: Path, appended: bytes, kept: bool) -> None:
    source, out, again = tmp_path / "in.tflite", tmp_path / "out.tflite", tmp_path / "again.tflite"
    source.write_bytes(tb.build(tb.add_model()) + appended)
    rewrite(source, out)
    trailing = parse_model(out.read_bytes()).trailing.tobytes()
    if kept:
        assert out.read_bytes().endswith(appended) and trailing.endswith(appended)
    else:
        assert trailing == b""
    rewrite(out, again)
    assert again.read_bytes() == out.read_bytes(), "idempotent"


# ---------------------------------------------------------------- checks LiteRT's verifier makes


def name_string_position(content: bytes, tensor: int = 1) -> int:
    """Where the name string of tensor ``tensor`` of subgraph 0 starts (its length field)."""
    t = tflite.Model.GetRootAs(content, 0).Subgraphs(0).Tensors(tensor)
    field = t._tab.Offset(10)
    return t._tab.Indirect(field + t._tab.Pos)


def name_offset_field(content: bytes, tensor: int = 1) -> int:
    t = tflite.Model.GetRootAs(content, 0).Subgraphs(0).Tensors(tensor)
    return t._tab.Pos + t._tab.Offset(10)


def test_string_without_terminating_zero() -> None:
    content = bytearray(tb.build(tb.add_model()))
    at = name_string_position(bytes(content))
    length = int.from_bytes(content[at : at + 4], "little")
    content[at + 4 + length] = ord("x")
    with pytest.raises(InvalidModelError, match="no terminating zero"):
        parse_model(bytes(content))


def test_zero_offset_and_misaligned_string() -> None:
    content = bytearray(tb.build(tb.add_model()))
    field = name_offset_field(bytes(content))
    zero = bytearray(content)
    zero[field : field + 4] = bytes(4)
    with pytest.raises(InvalidModelError, match="invalid offset 0"):
        parse_model(bytes(zero))
    odd = bytearray(content)
    odd[field : field + 4] = (int.from_bytes(content[field : field + 4], "little") + 1).to_bytes(4, "little")
    with pytest.raises(InvalidModelError, match="not 4-byte aligned"):
        parse_model(bytes(odd))


def test_options_under_union_type_none_are_dropped_like_litert(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].operators[0].fused_activation = 1
    model.subgraphs[0].operators[0].options_type = 0  # NONE, yet a table is there
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(tb.build(model))
    report = rewrite(source, out)
    assert report.tensors_converted == 1
    operator = tflite.Model.GetRootAs(out.read_bytes(), 0).Subgraphs(0).Operators(1)
    assert operator.BuiltinOptionsType() == 0 and operator._tab.Offset(12) == 0
    assert runtime.max_abs_error(runtime.run(source), runtime.run(out)) == 0


def test_subgraph_index_of_control_flow_options_in_range() -> None:
    while_options = {v: k for k, v in SCHEMA.unions["BuiltinOptions"].items()}["WhileOptions"]
    model = tb.add_model()
    model.subgraphs[0].operators[0].options_type = while_options
    model.subgraphs[0].operators[0].options_fields = [(0, 0), (1, 7)]  # cond 0, body 7: the model has one subgraph
    with pytest.raises(
        InvalidModelError, match=r"WhileOptions\.body_subgraph_index refers to subgraph 7, but the model has 1"
    ):
        parse_model(tb.build(model))
    model.subgraphs[0].operators[0].options_fields = [(0, 0), (1, 0)]
    parse_model(tb.build(model))


def test_negative_dimension_of_a_constant_is_refused(tmp_path: Path) -> None:
    model = tb.add_model()
    model.subgraphs[0].tensors[1].shape = [-4]
    source = tmp_path / "in.tflite"
    source.write_bytes(tb.build(model))
    with pytest.raises(InvalidModelError, match="none negative"):
        rewrite(source, tmp_path / "out.tflite")


# ---------------------------------------------------------------- output paths


def test_output_checks_happen_before_any_work_and_name_the_users_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = DATA / "tiny_mlp.fp32.tflite"
    calls = []
    from tflite_fp16 import pipeline

    monkeypatch.setattr(pipeline, "open_model", lambda *a: calls.append(a))  # must not be reached
    for target, message in [
        (tmp_path, "is a directory"),
        (Path("."), "is a directory"),
        (tmp_path / "missing" / "out.tflite", "does not exist"),
    ]:
        with pytest.raises(OutputError, match=message) as caught:
            rewrite(source, target)
        assert str(target) in str(caught.value) or repr(str(target))[1:-1] in str(caught.value)
        assert isinstance(caught.value, OSError) and isinstance(caught.value, RewriteError)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="not a regular file"):
        rewrite(source, fifo)
    assert calls == []


def test_failure_creating_the_temporary_file_names_the_users_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(output_module.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=r"cannot write '.*out.tflite': Permission denied") as caught:
        rewrite(DATA / "tiny_mlp.fp32.tflite", tmp_path / "out.tflite")
    assert ".tflite-fp16" not in str(caught.value) and caught.value.errno == 13


def test_missing_input_is_both_invalid_model_and_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError) as caught:
        rewrite(tmp_path / "nope.tflite", tmp_path / "out.tflite")
    assert isinstance(caught.value, InvalidModelError) and isinstance(caught.value, FileNotFoundError)


def test_symlink_output_is_written_through_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.tflite"
    real.write_bytes(b"old")
    link = tmp_path / "link.tflite"
    link.symlink_to(real)
    rewrite(DATA / "tiny_mlp.fp32.tflite", link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes()[4:8] == b"TFL3"


def test_setuid_and_setgid_bits_are_not_copied(tmp_path: Path) -> None:
    out = tmp_path / "out.tflite"
    out.write_bytes(b"old")
    os.chmod(out, 0o6750)
    rewrite(DATA / "tiny_mlp.fp32.tflite", out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750


def test_file_and_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(output_module.os, "fsync", record)
    rewrite(DATA / "tiny_mlp.fp32.tflite", tmp_path / "out.tflite")
    assert len(synced) == 2
    assert os.path.basename(synced[0]).startswith(".tflite-fp16.") and synced[1] == str(tmp_path)


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".tflite-fp16.{output_module._HOST}.{dead.pid}.abcdefgh.tmp"
    alive = tmp_path / f".tflite-fp16.{output_module._HOST}.{os.getppid()}.abcdefgh.tmp"
    other_host = tmp_path / f".tflite-fp16.elsewhere.{dead.pid}.abcdefgh.tmp"
    for path in (stale, alive, other_host):
        path.write_bytes(b"partial")
    rewrite(DATA / "tiny_mlp.fp32.tflite", tmp_path / "out.tflite")
    assert not stale.exists() and alive.exists() and other_host.exists()


def test_input_that_changes_during_the_run_is_detected(tmp_path: Path) -> None:
    source, out, flag = tmp_path / "in.tflite", tmp_path / "out.tflite", tmp_path / "flag"
    source.write_bytes(TINY)
    env = {**os.environ, "TFLITE_FP16_TEST_PAUSE": f"write:{flag}"}
    process = command(str(source), str(out), env=env)
    wait_for(flag)
    with open(source, "ab") as handle:
        handle.write(b"appended by someone else")
    flag.unlink()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "changed while it was being read" in err
    assert not out.exists() and not leftovers(tmp_path)


# ---------------------------------------------------------------- signals


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, "the command never reached its pause point"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT])
def test_termination_signals_clean_up(tmp_path: Path, signum: int) -> None:
    out, flag = tmp_path / "out.tflite", tmp_path / "flag"
    env = {**os.environ, "TFLITE_FP16_TEST_PAUSE": f"write:{flag}"}
    process = command(str(DATA / "small_cnn.fp32.tflite"), str(out), env=env)
    wait_for(flag)
    assert leftovers(tmp_path), "the temporary file exists while paused"
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert err.strip().splitlines() == [f"tflite-fp16: interrupted ({signal.Signals(signum).name}); no output written"]
    assert not out.exists() and not leftovers(tmp_path)


def test_killed_worker_and_truncated_input_leave_nothing(tmp_path: Path) -> None:
    source, out, flag = tmp_path / "in.tflite", tmp_path / "out.tflite", tmp_path / "flag"
    source.write_bytes((DATA / "small_cnn.fp32.tflite").read_bytes())
    env = {**os.environ, "TFLITE_FP16_TEST_PAUSE": f"write:{flag}"}
    process = command(str(source), str(out), env=env)
    wait_for(flag)
    worker = int(subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()[0])
    os.kill(worker, signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGKILL and "killed by SIGKILL" in err
    assert not out.exists() and not leftovers(tmp_path)
    flag.unlink()
    # Truncated while memory-mapped: the worker dies of SIGBUS when it reads the weights.
    big = tmp_path / "big.tflite"
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import models

    models.fc_chain(big, width=512, layers=4)
    process = command(str(big), str(out), env=env)
    wait_for(flag)
    os.truncate(big, 4096)
    flag.unlink()
    _, err = process.communicate(timeout=60)
    assert process.returncode in (1, 2), err
    assert "truncated or changed while it was being read" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not leftovers(tmp_path)


def test_interrupt_during_start_up_is_one_line(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    env = {**os.environ, "TFLITE_FP16_TEST_PAUSE": f"start:{flag}"}
    process = command(str(DATA / "tiny_mlp.fp32.tflite"), str(tmp_path / "out.tflite"), env=env)
    wait_for(flag)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and err.strip().splitlines() == [
        "tflite-fp16: interrupted (SIGINT); no output written"
    ]


# ---------------------------------------------------------------- caches


def test_generated_writer_cache_is_bounded() -> None:
    fields = [f.name for f in SCHEMA.tables["Tensor"].fields][:9]
    import itertools

    for order in itertools.islice(itertools.permutations(fields), 6000):
        writer._emitter_for(False, "Tensor", tuple(order))
    assert len(writer._EMITTERS) <= writer._CACHE_LIMIT and len(writer._COMPILED) <= writer._CACHE_LIMIT
