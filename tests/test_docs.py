"""The README and every page of docs/ run as pasted.

Each page runs in a scratch folder holding a copy of ``examples/``, block after block in
the page's order (later blocks may use the files earlier ones wrote):

* ```console blocks: each ``$ command`` runs in bash; what follows it, up to the next
  ``$``, is what it prints (stdout and stderr together, in order). A line ending in
  ``...`` stands for any line it begins; a line ``...`` alone for any number of lines. A
  command that exits non-zero must be followed by ``$ echo $?`` showing its status.
* ```python blocks run as scripts; ```pycon blocks run as doctests (ELLIPSIS on).
* ```sh blocks are not run: they may only install, clone, or run the development tools
  and benchmarks, or regenerate files of the repository (every other command must be in a
  console block, and so tested).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.M | re.S)
NOT_RUN = (
    "pip ",
    "git ",
    "cd ",
    "pytest",
    "lint-imports",
    "ruff ",
    "mypy",
    ".ci/run",
    "python benchmarks/",
    "python scripts/",
    "python examples/make_examples.py",
)  # installs, the development tools, benchmarks and the scripts that regenerate files of the repository
MARK = "@@tflite-fp16-docs-status"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [Block(page, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def matches(shown: list[str], actual: list[str]) -> bool:
    """Whether the actual lines are what the page shows (with '...' as above)."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(shown):
            return j == len(actual)
        line = shown[i]
        if line == "...":
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        if j == len(actual):
            return False
        if line.endswith("..."):
            ok = actual[j].startswith(line[:-3].rstrip())
        else:
            ok = actual[j] == line
        return ok and match(i + 1, j + 1)

    return match(0, 0)


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """The block's commands, each with the lines shown after it."""
    found: list[tuple[str, list[str]]] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        assert line.startswith("$ "), f"{block.where()}: a console block starts with '$ ': {line!r}"
        command = line[2:]
        while command.endswith("\\"):
            index += 1
            command = command + "\n" + lines[index]
        index += 1
        shown: list[str] = []
        while index < len(lines) and not lines[index].startswith("$ "):
            shown.append(lines[index])
            index += 1
        found.append((command, shown))
    return found


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave as they were written
    env.pop("COLUMNS", None)
    return env


def run_console(block: Block, folder: Path) -> None:
    steps = commands(block)
    script = "".join(f"{command}\n__s=$?; printf '\\n{MARK} %d\\n' $__s; (exit $__s)\n" for command, _ in steps)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    pieces = re.split(rf"\n?{MARK} (\d+)\n", result.stdout)
    outputs, statuses = pieces[0:-1:2], [int(s) for s in pieces[1::2]]
    assert len(statuses) == len(steps), f"{block.where()}: the block stopped early:\n{result.stdout}"
    for index, ((command, shown), output, status) in enumerate(zip(steps, outputs, statuses)):
        actual = output.splitlines()
        assert matches(shown, actual), (
            f"{block.where()}: $ {command}\nshown:\n" + "\n".join(shown) + "\nprinted:\n" + "\n".join(actual)
        )
        if status != 0:
            following = steps[index + 1][0] if index + 1 < len(steps) else None
            assert following == "echo $?", f"{block.where()}: $ {command} exits {status}; show it with echo $?"


def run_python(block: Block, folder: Path) -> None:
    with tempfile.TemporaryDirectory() as scripts:  # a file, as a user saves it (multiprocessing's spawn needs one)
        script = Path(scripts) / "example.py"
        script.write_text(block.text)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=folder, env=environment(), capture_output=True, text=True, timeout=600
        )
    assert result.returncode == 0, f"{block.where()}:\n{result.stdout}{result.stderr}"


DOCTEST = """
import doctest, sys
text, name, line = sys.stdin.read(), sys.argv[1], int(sys.argv[2])
test = doctest.DocTestParser().get_doctest(text, {"__name__": "__main__"}, name, name, line)
runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
runner.run(test)
sys.exit(1 if runner.failures or not runner.tries else 0)
"""


def run_pycon(block: Block, folder: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", DOCTEST, block.where(), str(block.line)],
        input=block.text,
        cwd=folder,
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"{block.where()}:\n{result.stdout}{result.stderr}"


def check_not_run(block: Block) -> None:
    for line in block.text.splitlines():
        command = line.strip()
        if command and not command.startswith("#"):
            assert command.startswith(NOT_RUN), (
                f"{block.where()}: {command!r} would not be tested: put it in a console block"
            )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_page_runs_as_pasted(page: Path, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    found = blocks(page)
    runners = {"console": run_console, "python": run_python, "pycon": run_pycon}
    for block in found:
        assert block.language in {*runners, "sh", "text", "json"}, f"{block.where()}: say the block's language"
        if block.language in runners:
            runners[block.language](block, tmp_path)
        elif block.language == "sh":
            check_not_run(block)
        else:
            assert not re.search(r"^(\$ |>>> )", block.text, re.M), (
                f"{block.where()}: a command in a {block.language} block"
            )
    if page.name == "README.md":  # pasted in a clone, its examples write only files git ignores
        written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
        written = [p for p in written if not p.startswith("examples/")]
        ignored = subprocess.run(
            ["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
        assert written and sorted(ignored) == written, f"not ignored by .gitignore: {set(written) - set(ignored)}"
    outside = FENCE.sub("", page.read_text())
    assert not re.search(r"^ {4,}(\$ |>>> |tflite-fp16 )", outside, re.M), f"{page}: a command outside a code block"


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.*)$", FENCE.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_links_between_pages_resolve() -> None:
    links = 0
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", page.read_text())):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{page.relative_to(ROOT)}: no heading for {target}"
            links += 1
    assert links >= len(PAGES)  # every page is linked and links on


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"](docs/{page.name}" in readme, f"the README does not link {page.name}"


def test_the_matcher_can_fail() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"]) and matches(["ab..."], ["abc"])
    assert not matches(["a", "d"], ["a", "b", "d"]) and not matches(["ab..."], ["ba"]) and not matches(["a"], [])


def test_examples_are_what_their_script_writes() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import tflite_builder as tb

    assert (ROOT / "examples" / "audio_frontend.tflite").read_bytes() == tb.build(tb.frontend_model())
    assert (ROOT / "examples" / "filterbank.tflite").read_bytes() == tb.build(tb.filterbank_model())
    with np.load(ROOT / "examples" / "filterbank_calibration.npz") as calibration:
        assert calibration["signal"].shape == (2, 1, 16)
    assert (ROOT / "examples" / "small_cnn.tflite").read_bytes() == (
        ROOT / "tests" / "data" / "small_cnn.fp32.tflite"
    ).read_bytes()
    with np.load(ROOT / "examples" / "audio_frontend_inputs.npz") as inputs:
        audio = inputs["audio"]
    assert audio.shape == (3, 1, 8) and not audio[0].any() and np.abs(audio[1]).max() > 10000
    with np.load(ROOT / "examples" / "small_cnn_inputs.npz") as inputs:
        images = inputs["keras_tensor"]
    assert images.shape[1:] == (1, 32, 32, 3) and images.dtype == np.float32


DOCSTRINGS = """
import doctest, importlib, pkgutil, sys
import tflite_fp16
tries = failures = 0
names = ["tflite_fp16"] + [m.name for m in pkgutil.walk_packages(tflite_fp16.__path__, "tflite_fp16.")]
for name in names:
    if name.endswith("__main__"):
        continue
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    tries, failures = tries + result.attempted, failures + result.failed
print(f"{tries} examples, {failures} failed")
sys.exit(1 if failures else 0)
"""


def test_every_docstring_example_runs(tmp_path: Path) -> None:
    """The examples in the package's docstrings run too, from a folder holding ``examples/``."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    result = subprocess.run(
        [sys.executable, "-c", DOCSTRINGS], cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    tried = int(result.stdout.strip().splitlines()[-1].split()[0])
    assert tried >= 40  # the public functions' examples are among them
