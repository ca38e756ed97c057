"""LiteRT's side of a verification, in a child process of its own.

Run as ``python -m tflite_fp16.verification.worker READ_FD WRITE_FD PARENT_PID`` by
:class:`~tflite_fp16.verification.session.LiteRTSession`; this is the only module that imports
LiteRT (``ai_edge_litert``, the ``[verify]`` extra). It answers requests on a pipe until the pipe
closes: a crash inside LiteRT (a model it rejects in prepare can make it segfault) ends this
process, never the caller's. It dies with its parent (``PR_SET_PDEATHSIG`` on Linux).

Requests (tuples, pickled): ``describe``, ``samples``, ``run``, ``try``, ``layers``; each is
answered ``("ok", result)`` or ``("error", message)``.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from ..work import die_with_parent
from .metrics import compare_outputs

ModelSource = tuple[str, Any]  # ("path", str) or ("bytes", bytes)


class Worker:
    """The interpreters and the samples of one verification."""

    def __init__(self) -> None:
        from ai_edge_litert import interpreter as litert

        self.litert = litert
        self.samples: list[tuple[str | None, dict[str, np.ndarray]]] = []
        # Interpreters that failed to prepare are never destroyed: with XNNPACK, destroying one
        # can crash the process. They live until it exits.
        self.failed: list[Any] = []

    def interpreter(self, source: ModelSource, resolver: str, preserve: bool = False) -> Any:
        kind = getattr(self.litert.OpResolverType, resolver)
        options: dict[str, Any] = {"experimental_op_resolver_type": kind}
        if preserve:
            options["experimental_preserve_all_tensors"] = True
        if source[0] == "path":
            return self.litert.Interpreter(model_path=source[1], **options)
        return self.litert.Interpreter(model_content=source[1], **options)

    def describe(self, source: ModelSource, resolver: str) -> list[tuple[Any, ...]]:
        """Each signature (None: the model without signatures): key, inputs (name, shape signature,
        type) and output names."""
        interpreter = self.interpreter(source, resolver)
        keys = sorted(interpreter.get_signature_list())
        described = []
        for key in keys or [None]:
            subgraph = 0
            if key is not None:
                runner = interpreter.get_signature_runner(key)
                inputs = runner.get_input_details()
                outputs = sorted(runner.get_output_details())
                subgraph = int(getattr(runner, "_subgraph_index", 0))
            else:
                inputs = {d["name"]: d for d in interpreter.get_input_details()}
                outputs = [d["name"] for d in interpreter.get_output_details()]
            specs = []
            for name, detail in inputs.items():
                signature = tuple(int(d) for d in detail["shape_signature"])
                shape = signature if len(signature) else tuple(int(d) for d in detail["shape"])
                specs.append((name, shape, np.dtype(detail["dtype"]).str))
            described.append((key, sorted(specs), list(outputs), subgraph))
        return described

    def invoke(self, interpreter: Any, key: str | None, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one signature on ``feeds``: the inputs resized to the feeds first, then allocated."""
        if key is not None:
            result = interpreter.get_signature_runner(key)(**feeds)
            return {name: np.array(value) for name, value in result.items()}
        details = {d["name"]: d["index"] for d in interpreter.get_input_details()}
        for name, value in feeds.items():
            interpreter.resize_tensor_input(details[name], list(value.shape))
        interpreter.allocate_tensors()
        for name, value in feeds.items():
            interpreter.set_tensor(details[name], value)
        interpreter.invoke()
        return {d["name"]: interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()}

    def set_samples(self, samples: list[tuple[str | None, dict[str, np.ndarray]]]) -> None:
        self.samples = samples

    def run(self, source: ModelSource, resolver: str) -> list[dict[str, np.ndarray]]:
        """Every sample's outputs."""
        interpreter = self.interpreter(source, resolver)
        outputs = []
        for number, (key, feeds) in enumerate(self.samples):
            try:
                outputs.append(self.invoke(interpreter, key, feeds))
            except (ValueError, RuntimeError) as error:
                self.failed.append(interpreter)
                raise RuntimeError(f"sample {number}: {error}") from None
        return outputs

    def try_feeds(self, source: ModelSource, resolver: str, key: str | None, feeds: dict[str, np.ndarray]) -> int:
        """Run once on ``feeds``: the number of output values; an error if LiteRT cannot prepare
        or run the model so."""
        interpreter = self.interpreter(source, resolver)
        try:
            outputs = self.invoke(interpreter, key, feeds)
        except (ValueError, RuntimeError):
            self.failed.append(interpreter)
            raise
        return sum(int(np.size(value)) for value in outputs.values())

    def layers(
        self,
        original: ModelSource,
        converted: ModelSource,
        sample: int,
        subgraph: int,
        pairs: list[tuple[int, int]],
    ) -> list[tuple[float, float, int] | None]:
        """Run both models on sample ``sample`` with every tensor kept (builtin kernels: a delegate
        would hide its intermediates) and compare each pair of tensors of ``subgraph``:
        (relative L2 error, max abs error, new non-finite values), None where either has no value."""
        key, feeds = self.samples[sample]
        values = []
        for source in (original, converted):
            interpreter = self.interpreter(source, "BUILTIN_WITHOUT_DEFAULT_DELEGATES", preserve=True)
            try:
                self.invoke(interpreter, key, feeds)
            except (ValueError, RuntimeError):
                self.failed.append(interpreter)
                raise
            values.append(interpreter)
        first, second = values
        found: list[tuple[float, float, int] | None] = []
        for a, b in pairs:
            try:
                reference = first.get_tensor(a, subgraph)
                other = second.get_tensor(b, subgraph)
            except (ValueError, RuntimeError):
                found.append(None)
                continue
            difference = compare_outputs(reference, other)
            found.append((difference.rel_l2_error, difference.max_abs_error, difference.new_nonfinite))
        return found


def serve(requests: Connection, replies: Connection) -> None:
    worker = Worker()
    handlers: dict[str, Callable[..., Any]] = {
        "describe": worker.describe,
        "samples": worker.set_samples,
        "run": worker.run,
        "try": worker.try_feeds,
        "layers": worker.layers,
    }
    while True:
        try:
            name, arguments = requests.recv()
        except EOFError:
            return
        try:
            result = handlers[name](*arguments)
        except (ValueError, RuntimeError, OSError, KeyError, TypeError) as error:
            replies.send(("error", " ".join(str(error).split()) or type(error).__name__))
            continue
        replies.send(("ok", result))


def main(argv: list[str]) -> None:
    read_fd, write_fd, parent = (int(a) for a in argv[1:4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches the whole group
    if not die_with_parent(parent, signal.SIGKILL):  # the parent died before the request took effect
        os._exit(0)
    try:
        from ai_edge_litert import interpreter  # noqa: F401  (fails here, before the first request, without LiteRT)
    except ImportError as error:
        Connection(write_fd, readable=False).send(("missing", str(error)))
        os._exit(0)
    replies = Connection(write_fd, readable=False)
    replies.send(("ready", None))
    serve(Connection(read_fd, writable=False), replies)
    sys.stdout.flush()
    # Skip the interpreters' destructors (see Worker.failed): the process ends here.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
