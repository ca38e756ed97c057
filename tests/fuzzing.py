"""Structure-aware mutation of TFLite files, and the judgement of what the rewriter does with them.

Used by ``tests/test_fuzz.py`` (a few hundred mutants under hypothesis) and by
``benchmarks/fuzz.py`` (the long run). A mutant is a valid model with a few of
its structural fields changed: offsets redirected to other objects (sharing,
DAGs, objects read as another type), vector lengths inflated, union types and
indices set out of range, buffer ranges pointed into appended data or into the
flatbuffer, bytes appended or the file cut short.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import random
import struct
import time
import tracemalloc
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tflite_fp16 import InvalidModelError, RewriteError, UnsupportedModelError, rewrite
from tflite_fp16.schema import SCHEMA

_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class Site:
    """A place in the file a mutation can change: its position, what it holds, and its size."""

    position: int
    kind: str  # "offset" (uoffset to an object), "length" (of a vector or string), "union_type", "index", "external"
    size: int
    target: int = 0  # for an offset: where it points
    what: str = ""  # for an offset: the type of what it points to


def sites(content: bytes) -> list[Site]:
    """Every offset, vector length, union type and index field of a valid model."""
    found: list[Site] = []
    seen = set()

    def table(pos: int, name: str) -> None:
        if (pos, name) in seen:
            return
        seen.add((pos, name))
        spec = SCHEMA.tables[name]
        vtable = pos - struct.unpack_from("<i", content, pos)[0]
        vt_size = struct.unpack_from("<H", content, vtable)[0]
        offsets = struct.unpack_from(f"<{(vt_size - 4) // 2}H", content, vtable + 4)
        values = {}
        for field in spec.fields:
            if field.slot >= len(offsets) or offsets[field.slot] == 0:
                continue
            at = pos + offsets[field.slot]
            if field.kind == "scalar":
                size = struct.calcsize(
                    "<"
                    + {
                        "bool": "?",
                        "int8": "b",
                        "uint8": "B",
                        "int16": "h",
                        "uint16": "H",
                        "int32": "i",
                        "uint32": "I",
                        "int64": "q",
                        "uint64": "Q",
                        "float32": "f",
                        "float64": "d",
                    }[field.type]
                )  # type: ignore[index]
                values[field.name] = (at, size)
                if field.name.endswith("_type") and size == 1:
                    found.append(Site(at, "union_type", 1))
                elif field.name in ("buffer", "opcode_index", "tensor_index", "subgraph_index") or field.name.endswith(
                    "subgraph_index"
                ):
                    found.append(Site(at, "index", size))
                elif field.name in ("offset", "size", "large_custom_options_offset", "large_custom_options_size"):
                    found.append(Site(at, "external", size))
                continue
            target = at + _U32.unpack_from(content, at)[0]
            found.append(Site(at, "offset", 4, target, f"{field.kind}:{field.table or field.type or field.union}"))
            if field.kind in ("table", "union"):
                if field.kind == "union":
                    type_at = values.get(field.name + "_type")
                    if type_at is None:
                        continue
                    member = SCHEMA.unions[field.union].get(content[type_at[0]])  # type: ignore[index]
                    if member is None:
                        continue
                    table(target, member)
                else:
                    table(target, field.table)  # type: ignore[arg-type]
                continue
            found.append(Site(target, "length", 4))
            length = _U32.unpack_from(content, target)[0]
            if field.kind == "vector_table":
                for i in range(length):
                    element = target + 4 + 4 * i
                    child = element + _U32.unpack_from(content, element)[0]
                    found.append(Site(element, "offset", 4, child, f"table:{field.table}"))
                    table(child, field.table)  # type: ignore[arg-type]
            elif field.kind == "vector_string":
                for i in range(length):
                    element = target + 4 + 4 * i
                    child = element + _U32.unpack_from(content, element)[0]
                    found.append(Site(element, "offset", 4, child, "string:"))
                    found.append(Site(child, "length", 4))

    table(_U32.unpack_from(content, 0)[0], SCHEMA.root_table)
    return found


def appended_zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("labels.txt", "a\nb\nc\n")
    return archive.getvalue()


def mutate(content: bytes, seed: int, count: int = 0) -> bytes:
    """``content`` with 1 to 4 (or ``count``) structural mutations chosen by ``seed``."""
    rng = random.Random(seed)
    data = bytearray(content)
    all_places = sites(content)
    for _ in range(count or rng.choice([1, 1, 1, 2, 3, 4])):
        places = [s for s in all_places if s.position + s.size <= len(data)]  # the file may have been cut
        offsets = [s for s in places if s.kind == "offset"]
        choice = rng.random()
        if choice < 0.45 and len(offsets) > 1:
            a = rng.choice(offsets)
            alike = [b for b in offsets if b.what == a.what and b.target > a.position and b is not a]
            if alike and rng.random() < 0.75:  # valid sharing: another object of the same type, ahead
                b = rng.choice(alike)
            else:  # anything: backwards (invalid), or an object read as another type
                b = rng.choice(offsets)
            _U32.pack_into(data, a.position, (b.target - a.position) % (1 << 32))
        elif choice < 0.5:
            lengths = [s for s in places if s.kind == "length"]
            if lengths:
                site = rng.choice(lengths)
                old = _U32.unpack_from(data, site.position)[0]
                _U32.pack_into(
                    data,
                    site.position,
                    rng.choice([0, old + 1, old * 2 + 7, 1 << 20, (1 << 31) - 1, (1 << 32) - 1]) % (1 << 32),
                )
        elif choice < 0.6:
            unions = [s for s in places if s.kind == "union_type"]
            if unions:
                data[rng.choice(unions).position] = rng.randrange(256)
        elif choice < 0.72:
            indices = [s for s in places if s.kind == "index"]
            if indices:
                site = rng.choice(indices)
                value = rng.choice([0, 1, 2, 255, 65535, (1 << (8 * site.size - 1)) - 1, (1 << (8 * site.size)) - 1])
                data[site.position : site.position + site.size] = value.to_bytes(site.size, "little")
        elif choice < 0.82:
            externals = [s for s in places if s.kind == "external"]
            if externals:
                site = rng.choice(externals)
                value = rng.choice(
                    [0, 2, 8, len(data) // 2, len(data), len(data) + 16, rng.randrange(max(1, len(data)))]
                )
                data[site.position : site.position + site.size] = (value % (1 << (8 * site.size))).to_bytes(
                    site.size, "little"
                )
            else:
                data += appended_zip()
        elif choice < 0.9:
            data += rng.choice([appended_zip(), bytes(rng.randrange(1, 40)), bytes(10) + b"DATA"])
        elif choice < 0.95:
            del data[rng.randrange(8, max(9, len(data))) :]
        elif data:
            position = rng.randrange(len(data))
            data[position] = rng.randrange(256)
    return bytes(data)


def _load(path: str) -> tuple[bool, str]:
    """In a worker process: does LiteRT load (verify and build) this model?"""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_path=path)
        return True, ""
    except Exception as error:  # LiteRT raises ValueError / RuntimeError for models it rejects
        return False, f"{type(error).__name__}: {str(error)[:200]}"


class LiteRTLoader:
    """Loads models in LiteRT in a separate process, so that a crash in LiteRT on a hostile
    file ends that process, not the caller."""

    def __init__(self) -> None:
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None

    def loads(self, path: Path) -> tuple[bool, str]:
        for _ in range(2):
            if self.pool is None:
                self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=1)
            try:
                return self.pool.submit(_load, str(path)).result(timeout=120)
            except concurrent.futures.process.BrokenProcessPool:
                self.pool = None
                return False, "LiteRT crashed"
        return False, "LiteRT unavailable"

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


@dataclass
class Outcome:
    """What the rewriter did with one mutant."""

    kind: str  # "converted", "unchanged", "invalid", "unsupported", "refused" (another RewriteError)
    message: str = ""
    seconds: float = 0.0
    peak_bytes: int = 0


MEMORY_FACTOR = 200  # peak Python memory (NumPy included) may be this many times the file, plus ...
MEMORY_CONSTANT = 64 << 20  # ... this much
SECONDS_LIMIT = 20.0


def judge(content: bytes, directory: Path, loader: LiteRTLoader | None) -> Outcome:
    """Rewrite ``content``; assert the outcome is acceptable; return it.

    Acceptable: our own exception (InvalidModelError, UnsupportedModelError, or another
    RewriteError such as an output over LiteRT's limits), with nothing written; or an
    output that our reader reads back, no larger than a bounded multiple of the input,
    and that LiteRT loads whenever LiteRT loads the input. Always: no temporary file
    left, the input unchanged, bounded time and memory.
    """
    source, target = directory / "in.tflite", directory / "out.tflite"
    source.write_bytes(content)
    if target.exists():
        target.unlink()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        report = rewrite(source, target)
        outcome = Outcome("unchanged" if report.unchanged else "converted")
    except InvalidModelError as error:
        outcome = Outcome("invalid", str(error))
    except UnsupportedModelError as error:
        outcome = Outcome("unsupported", str(error))
    except RewriteError as error:
        outcome = Outcome("refused", str(error))
    finally:
        outcome_seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    outcome.seconds, outcome.peak_bytes = outcome_seconds, peak
    assert source.read_bytes() == content, "the input was modified"
    leftovers = sorted(p.name for p in directory.iterdir() if p.name not in ("in.tflite", "out.tflite"))
    assert not leftovers, f"files left behind: {leftovers}"
    assert outcome.seconds < SECONDS_LIMIT, f"took {outcome.seconds:.1f} s"
    assert peak <= MEMORY_FACTOR * len(content) + MEMORY_CONSTANT, (
        f"peak memory {peak:,} for a file of {len(content):,}"
    )
    if outcome.kind in ("converted", "unchanged"):
        output = target.read_bytes()
        assert len(output) <= 3 * len(content) + (64 << 10), f"output of {len(output):,} bytes for {len(content):,}"
        from tflite_fp16.format.reader import parse_model

        parse_model(output)  # our own output reads back
        if loader is not None and outcome.kind == "converted":
            input_loads, _ = loader.loads(source)
            if input_loads:
                output_loads, why = loader.loads(target)
                assert output_loads, f"LiteRT loads the input but not the output: {why}"
    else:
        assert not target.exists(), "an output was written although the rewrite failed"
    return outcome
