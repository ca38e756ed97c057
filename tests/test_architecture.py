"""The package's shape, beyond what import-linter's contracts check (see pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "tflite_fp16"


def private_imports(source: str, module: str) -> list[str]:
    """Every ``from <a module of the package> import _private`` in ``source``, the code of ``module``."""
    package = module.split(".")[:-1]  # what a relative import starts from (an __init__'s: its own package)
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - node.level + 1]
            imported = ".".join(base + ([node.module] if node.module else []))
        else:
            imported = node.module or ""
        for alias in node.names:
            if imported.startswith("tflite_fp16") and alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"{module}: from {imported} import {alias.name}")
    return found


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(["tflite_fp16", *path.relative_to(PACKAGE).with_suffix("").parts])
        offenders.extend(private_imports(path.read_text(), module))
    assert offenders == []


def test_a_private_import_is_found() -> None:
    code = "from .plan import _Subgraph, make_plan\nfrom ..format import model\nfrom ..work import _hidden\n"
    assert private_imports(code, "tflite_fp16.conversion.edit") == [
        "tflite_fp16.conversion.edit: from tflite_fp16.conversion.plan import _Subgraph",
        "tflite_fp16.conversion.edit: from tflite_fp16.work import _hidden",
    ]
