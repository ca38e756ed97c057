"""Hardened, round 2: side outputs, errors that are never silent, many models at once under
signals and kills, --to float32 on models it must not break, inspect on hostile strings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import runtime
import tflite_builder as tb

from tflite_fp16 import rewrite, rewrite_bytes, rewrite_many, widen
from tflite_fp16.format.reader import read_model
from tflite_fp16.tools import batch

DATA = Path(__file__).resolve().parent / "data"
TINY = (DATA / "tiny_mlp.fp32.tflite").read_bytes()


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tflite_fp16", *args], capture_output=True, text=True, **kwargs)


def command(*args: str, env: Any = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tflite_fp16", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def leftovers(directory: Path) -> list[str]:
    return [str(p) for p in directory.rglob(".tflite-fp16.*")]


def wait_for(path: Path, timeout: float = 60) -> int:
    """Wait until ``path`` exists and holds a process id; that id."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        assert time.monotonic() < deadline, "the command never reached its pause point"
        time.sleep(0.02)


def session_processes(session: int) -> list[int]:
    """The live processes (zombies aside) of session ``session``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            found.append(int(entry.name))
    return found


def wait_until_gone(session: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_processes(session) == [], "processes were left behind"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("a", "b", "c", "d"):
        (models / f"{name}.tflite").write_bytes(TINY)
    return models


# ---------------------------------------------------------------- side outputs


@pytest.mark.parametrize("flag", ["--json", "--save-keep", "--plot"])
def test_a_side_output_onto_the_input_or_the_output_is_refused_before_any_work(tmp_path: Path, flag: str) -> None:
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(TINY)
    extra = ["--auto"] if flag == "--save-keep" else (["--verify"] if flag == "--plot" else [])
    for target, what in ((source, "input"), (out, "output")):
        out.write_bytes(b"old output")
        result = run(*extra, flag, str(target), str(source), str(out))
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and str(target) in result.stderr
        assert "would replace a .tflite file" in result.stderr or f"also the {what}" in result.stderr
        assert source.read_bytes() == TINY and out.read_bytes() == b"old output"


def test_side_outputs_onto_a_directory_a_device_a_fifo_or_each_other(tmp_path: Path) -> None:
    source, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    source.write_bytes(TINY)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target, message in (
        (tmp_path, "is a directory"),
        ("/dev/full", "not a regular file"),
        (fifo, "not a regular file"),
    ):
        result = run("--json", str(target), str(source), str(out), timeout=60)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    same = tmp_path / "r.txt"
    result = run("--auto", "--json", str(same), "--save-keep", str(same), str(source), str(out))
    assert result.returncode == 1 and "also the JSON report" in result.stderr and not out.exists()


def test_a_json_report_that_cannot_be_written_says_so_and_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tflite_fp16 import cli
    from tflite_fp16.format import writer

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "copy_file", full)
    out, report = tmp_path / "out.tflite", tmp_path / "r.json"
    status = cli.main([str(DATA / "tiny_mlp.fp32.tflite"), str(out), "--json", str(report)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1
    assert "No space left on device" in err[0] and f"the model was written to {str(out)!r}" in err[0]
    assert out.exists() and not report.exists() and not leftovers(tmp_path)


def test_json_to_standard_output_stays_allowed(tmp_path: Path) -> None:
    result = run("--json", "-", str(DATA / "tiny_mlp.fp32.tflite"), str(tmp_path / "out.tflite"))
    assert result.returncode == 0 and result.stdout.lstrip().startswith("{")


# ---------------------------------------------------------------- errors are never silent


@pytest.mark.parametrize(
    "patch, args, shown",
    [
        ("from tflite_fp16 import cli; cli._emit_json = boom", ["IN", "OUT", "--json", "-"], "emit"),
        ("from tflite_fp16.tools import batch; batch._folders_for = boom", ["-o", "DIR", "IN"], "folders"),
        ("from tflite_fp16.tools import inspect; inspect.render = boom", ["inspect", "IN"], "render"),
        ("from tflite_fp16 import report; report.render_text = boom", ["IN", "OUT"], "render_text"),
    ],
)
def test_every_escape_path_prints_one_line(tmp_path: Path, patch: str, args: list[str], shown: str) -> None:
    argv = [
        a.replace("IN", str(DATA / "tiny_mlp.fp32.tflite"))
        .replace("OUT", str(tmp_path / "o.tflite"))
        .replace("DIR", str(tmp_path / "dir"))
        for a in args
    ]

    def supervised(extra: list[str]) -> subprocess.CompletedProcess[str]:
        code = (
            "import sys\n"
            f"def boom(*a, **k):\n    raise RuntimeError('bug in {shown}')\n"
            f"{patch}\n"
            "from tflite_fp16 import cli\n"
            f"sys.argv = ['tflite-fp16', *{[*argv, *extra]!r}]\n"
            "cli.run()\n"
        )
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    result = supervised([])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()  # (with --json -, the summary goes to stderr too)
    assert lines[-1] == f"tflite-fp16: internal error: RuntimeError: bug in {shown} (please report it; -v shows where)"
    assert sum(line.startswith("tflite-fp16:") for line in lines) == 1
    if argv[0] != "inspect":
        verbose = supervised(["-v"])
        assert verbose.returncode == 1 and "Traceback" in verbose.stderr and f"bug in {shown}" in verbose.stderr


# ---------------------------------------------------------------- many models at once


def test_a_worker_killed_fails_its_own_file_and_the_batch_goes_on(folder: Path, tmp_path: Path) -> None:
    out, flag = tmp_path / "out", tmp_path / "flag"
    env = {**os.environ, "TFLITE_FP16_TEST_PAUSE": f"write:{flag}:b.tflite"}
    process = command("-o", str(out), "-j", "2", str(folder), env=env)
    worker = wait_for(flag)
    os.kill(worker, signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.strip().splitlines() == [
        f"tflite-fp16: error: {str(folder / 'b.tflite')!r}: the process converting it died (killed by SIGKILL (out of "
        f"memory?)); the other files go on"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a.tflite", "c.tflite", "d.tflite"]
    assert not leftovers(tmp_path)
    wait_until_gone(process.pid)


@pytest.mark.parametrize("to_group", [False, True])
def test_a_signal_stops_every_commit_and_says_what_was_written(folder: Path, tmp_path: Path, to_group: bool) -> None:
    out, flag = tmp_path / "out", tmp_path / "flag"
    env = {**os.environ, "TFLITE_FP16_TEST_PAUSE": f"commit:{flag}:c.tflite"}
    process = command("-o", str(out), "-j", "2", str(folder), env=env)
    wait_for(flag)  # c.tflite is complete and about to be committed: it must not be, after the signal
    if to_group:
        os.killpg(process.pid, signal.SIGTERM)  # what systemd, Kubernetes and docker stop do
    else:
        os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    flag.unlink(missing_ok=True)
    assert process.returncode == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tflite-fp16: interrupted (SIGTERM); ")
    assert lines[0].endswith("no other output written")
    written = sorted(p.name for p in out.rglob("*.tflite")) if out.exists() else []
    assert "c.tflite" not in written
    for name in written:
        assert str(out / name) in lines[0]
    assert lines[0].count(".tflite") == len(written)
    wait_until_gone(process.pid)
    time.sleep(1.0)  # nothing is committed after the command has ended either
    assert sorted(p.name for p in out.rglob("*.tflite")) == written if out.exists() else True
    assert not leftovers(tmp_path)


def test_killing_the_single_file_command_kills_its_worker(tmp_path: Path) -> None:
    out, flag = tmp_path / "out.tflite", tmp_path / "flag"
    env = {**os.environ, "TFLITE_FP16_TEST_PAUSE": f"write:{flag}"}
    process = command(str(DATA / "small_cnn.fp32.tflite"), str(out), env=env)
    worker = wait_for(flag)
    assert worker != process.pid
    os.kill(process.pid, signal.SIGKILL)  # the supervisor: its worker must not go on and write
    process.wait(timeout=30)
    flag.unlink()
    wait_until_gone(process.pid)
    time.sleep(0.5)
    assert not out.exists()


def test_jobs_are_capped_at_the_files(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = []
    real = batch._Pool._start

    def counted(self: Any) -> Any:
        started.append(1)
        return real(self)

    monkeypatch.setattr(batch._Pool, "_start", counted)
    results = rewrite_many([folder], tmp_path / "out", jobs=10_000)
    assert [r.status for r in results] == ["converted"] * 4 and len(started) <= 4
    assert min(10_000, batch.MAX_JOBS, 4) == 4


def test_an_output_folder_that_is_a_file_and_folders_of_failures(folder: Path, tmp_path: Path) -> None:
    existing = tmp_path / "file.txt"
    existing.write_text("keep me")
    result = run("-o", str(existing), str(folder))
    assert result.returncode == 1 and "it is not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and existing.read_text() == "keep me"
    broken = tmp_path / "broken"
    (broken / "deep").mkdir(parents=True)
    (broken / "deep" / "x.tflite").write_bytes(b"not a model")
    out = tmp_path / "never"
    assert run("-o", str(out), str(broken)).returncode == 1
    assert not out.exists()  # every input failed: the output folder is not left behind


def test_in_place_does_not_follow_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(TINY)
    inside = tmp_path / "untrusted"
    inside.mkdir()
    (inside / "own.tflite").write_bytes(TINY)
    (inside / "link.tflite").symlink_to(outside)
    (inside / "alias.tflite").symlink_to(inside / "own.tflite")
    result = run("--in-place", str(inside))
    assert result.returncode == 1
    assert outside.read_bytes() == TINY  # never written through the link
    assert "a symbolic link to a file outside" in result.stderr and "link.tflite" in result.stderr
    assert (inside / "own.tflite").read_bytes() != TINY  # its own model converted (once)


def test_a_fifo_is_refused_as_input_and_never_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    result = run(str(fifo), str(tmp_path / "out.tflite"), timeout=60)
    assert result.returncode == 2 and "not a regular file" in result.stderr
    folder = tmp_path / "f"
    folder.mkdir()
    os.mkfifo(folder / "pipe.tflite")
    result = run("--check", str(folder), timeout=60)
    assert result.returncode == 2 and "not a regular file" in result.stderr


def test_rewrite_many_on_a_dask_cluster_with_a_worker_killed(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    distributed = pytest.importorskip("distributed")  # in the test extra: CI has it
    import dask

    flag = tmp_path / "flag"
    monkeypatch.setenv("TFLITE_FP16_TEST_PAUSE", f"write:{flag}:b.tflite")
    # No retry of a task whose worker died, no task queued on a worker before it can start it, and a
    # worker per file: the killed worker held only b.tflite's task (Dask fails every task a dead worker held).
    settings = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    with (
        dask.config.set(settings),
        distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        found: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: found.update(
                results=rewrite_many([folder], tmp_path / "out", executor=client.get_executor())
            ),
        )
        worker.start()
        os.kill(wait_for(flag), signal.SIGKILL)
        worker.join(timeout=120)
        assert not worker.is_alive(), "the batch hangs"
    by_name = {Path(r.input).name: r for r in found["results"]}
    assert by_name["b.tflite"].status == "failed" and "KilledWorker" in by_name["b.tflite"].error
    assert [by_name[n].status for n in ("a.tflite", "c.tflite", "d.tflite")] == ["converted"] * 3


# ---------------------------------------------------------------- --to float32


def _half(values: list[float]) -> bytes:
    return np.asarray(values, "<f2").tobytes()


def _widen_oracle(tmp_path: Path, model: tb.Model, name: str) -> Any:
    source, back = tmp_path / f"{name}.tflite", tmp_path / f"{name}.back.tflite"
    source.write_bytes(tb.build(model))
    report = widen(source, back)
    assert_computes_the_same(source, back)
    return report


def assert_computes_the_same(source: Path, back: Path) -> None:
    """In LiteRT, in a child process (a model that crashes it cannot take the tests down), ``back``
    computes what ``source`` computes: bit for bit on the builtin kernels; with the default XNNPACK
    delegate, within float32's last bits (a constant where a DEQUANTIZE output was can take
    another kernel path there)."""
    for resolver in runtime.RESOLVERS:
        reference, widened = runtime.run_in_child(source, resolver), runtime.run_in_child(back, resolver)
        assert reference.keys() == widened.keys()
        for key, value in reference.items():
            if resolver == "builtin":
                np.testing.assert_array_equal(widened[key], value)
            else:
                np.testing.assert_allclose(widened[key], value, rtol=1e-6, atol=1e-6)


def test_a_dequantize_output_with_a_second_writer_stays(tmp_path: Path) -> None:
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.DEQUANTIZE, version=3), tb.OperatorCode(tb.ADD), tb.OperatorCode(tb.MUL)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([4], name="x"),
                    tb.Tensor([4], type=tb.FLOAT16, name="c", buffer=1),
                    tb.Tensor([4], name="t"),
                    tb.Tensor([4], name="y"),
                ],
                operators=[tb.Operator(0, [1], [2]), tb.Operator(1, [0, 0], [2]), tb.Operator(2, [2, 0], [3])],
                inputs=[0],
                outputs=[3],
            )
        ],
        buffers=[None, _half([0.5, 1.5, -2.0, 3.0])],
        signatures=[tb.Signature("serving_default", 0, [("x", 0)], [("y", 3)])],
    )
    report = _widen_oracle(tmp_path, model, "second_writer")
    assert report.widened == () and "only it writes" in report.float16_kept[0][3]


def test_two_dequantize_ops_writing_one_tensor_stay(tmp_path: Path) -> None:
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.DEQUANTIZE, version=3), tb.OperatorCode(tb.MUL)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([4], name="x"),
                    tb.Tensor([4], type=tb.FLOAT16, name="c1", buffer=1),
                    tb.Tensor([4], type=tb.FLOAT16, name="c2", buffer=2),
                    tb.Tensor([4], name="t"),
                    tb.Tensor([4], name="y"),
                ],
                operators=[tb.Operator(0, [1], [3]), tb.Operator(0, [2], [3]), tb.Operator(1, [3, 0], [4])],
                inputs=[0],
                outputs=[4],
            )
        ],
        buffers=[None, _half([0.5, 1.5, -2.0, 3.0]), _half([1.0, 2.0, 3.0, 4.0])],
        signatures=[tb.Signature("serving_default", 0, [("x", 0)], [("y", 4)])],
    )
    report = _widen_oracle(tmp_path, model, "two_writers")
    assert report.widened == () and len(report.float16_kept) == 2


@pytest.mark.parametrize("variant", ["intermediate", "second_densify"])
def test_a_sparse_constant_whose_densify_output_is_shared_stays(tmp_path: Path, variant: str) -> None:
    dense = np.array([[1.5, 0, 0.25, 0], [0, 0, -2, 4]], np.float32)
    values, structure = tb.csr(dense)
    half = np.frombuffer(values, "<f4").astype("<f2").tobytes()
    operators = [tb.Operator(0, [1], [2]), tb.Operator(1, [2], [3]), tb.Operator(2, [0, 3], [4])]
    if variant == "intermediate":
        operators[2].intermediates = [2]
    else:
        operators.insert(1, tb.Operator(0, [1], [2]))
    model = tb.Model(
        operator_codes=[
            tb.OperatorCode(tb.DENSIFY),
            tb.OperatorCode(tb.DEQUANTIZE, version=3),
            tb.OperatorCode(tb.ADD),
        ],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([2, 4], name="x"),
                    tb.Tensor([2, 4], type=tb.FLOAT16, name="w_sparse", buffer=1, csr=structure),
                    tb.Tensor([2, 4], type=tb.FLOAT16, name="w_half"),
                    tb.Tensor([2, 4], name="w"),
                    tb.Tensor([2, 4], name="y"),
                ],
                operators=operators,
                inputs=[0],
                outputs=[4],
            )
        ],
        buffers=[None, half],
        signatures=[tb.Signature("serving_default", 0, [("x", 0)], [("y", 4)])],
    )
    source, back = tmp_path / "sparse.tflite", tmp_path / "back.tflite"
    source.write_bytes(tb.build(model))
    report = widen(source, back)  # no KeyError: left as it is, with the reason
    assert report.widened == () and "DENSIFY" in report.float16_kept[0][3]
    assert back.read_bytes() == source.read_bytes()


def test_widening_lowers_the_dequantize_version_to_what_is_left(tmp_path: Path) -> None:
    weights = np.array([[10, -20, 30, -40], [5, 6, -7, 8], [1, 2, 3, 4], [-9, 9, -9, 9]], "i1")
    model = tb.Model(
        operator_codes=[tb.OperatorCode(tb.DEQUANTIZE, version=1), tb.OperatorCode(tb.FULLY_CONNECTED)],
        subgraphs=[
            tb.Subgraph(
                tensors=[
                    tb.Tensor([1, 4], name="x"),
                    tb.Tensor([4, 4], type=tb.INT8, name="w_int8", buffer=1, quantization=([0.05], [0])),
                    tb.Tensor([4, 4], name="w"),
                    tb.Tensor([4], name="bias", buffer=2),
                    tb.Tensor([1, 4], name="y"),
                ],
                operators=[tb.Operator(0, [1], [2]), tb.Operator(1, [0, 2, 3], [4])],
                inputs=[0],
                outputs=[4],
            )
        ],
        buffers=[None, weights.tobytes(), tb.float_bytes([0.1, -0.2, 0.3, 0.25])],
        signatures=[tb.Signature("serving_default", 0, [("x", 0)], [("y", 4)])],
    )
    source, half, back = tmp_path / "int8.tflite", tmp_path / "half.tflite", tmp_path / "back.tflite"
    source.write_bytes(tb.build(model))
    assert [c.name for c in rewrite(source, half).converted] == ["bias"]
    report = widen(half, back)
    # The shared DEQUANTIZE code went to 3 for the float16 bias; the int8 weights left need 2.
    assert [t.name for t in report.widened] == ["bias"] and report.versions_lowered == ((0, 3, 2),)
    assert read_model(back).operator_codes[0].get("version") == 2
    assert_computes_the_same(half, back)


# ---------------------------------------------------------------- inspect, the Python API


def test_inspect_escapes_every_string_and_prints_unknown_modes_as_numbers(tmp_path: Path) -> None:
    from tflite_fp16.conversion.metadata import CONVERSION_METADATA_KEY
    from tflite_fp16.format.model import Table, TFLiteModel
    from tflite_fp16.format.writer import serialize_table, write_model

    model = tb.add_model()
    model.operator_codes = [tb.OperatorCode(tb.CUSTOM, custom_code="Evil\x1b]0;pwned\x07Op")]
    source = tmp_path / "evil.tflite"
    source.write_bytes(tb.build(model))
    read = read_model(source)
    conversion = serialize_table(
        Table(
            "ConversionMetadata",
            {
                "environment": Table("Environment", {"tensorflow_version": b"2.21\x1b[2J", "model_type": 77}),
                "options": Table("ConversionOptions", {"model_optimization_modes": np.array([1001, 4242], "<i4")}),
            },
        )
    )
    buffers = (*read.buffers, Table("Buffer", {"data": np.frombuffer(conversion, np.uint8)}))
    metadata = (
        *read.root.tables("metadata"),
        Table("Metadata", {"name": CONVERSION_METADATA_KEY, "buffer": len(buffers) - 1}),
    )
    write_model(TFLiteModel(root=read.root.replace(buffers=buffers, metadata=metadata)), source)
    result = run("inspect", str(source))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;pwned\\x07" in result.stdout and "4242" in result.stdout
    as_json = run("inspect", "--json", "-", str(source))
    assert as_json.returncode == 0 and "\x1b" not in as_json.stdout


def test_rewrite_bytes_takes_a_non_contiguous_memoryview() -> None:
    strided = memoryview(np.frombuffer(TINY, np.uint8).repeat(2)[::2])
    assert not strided.contiguous
    converted, _ = rewrite_bytes(strided)
    assert converted == rewrite_bytes(TINY)[0]
    with pytest.raises(TypeError, match="bytes, a bytearray or a memoryview"):
        rewrite_bytes("not bytes")  # type: ignore[arg-type]
