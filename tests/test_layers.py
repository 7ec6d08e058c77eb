"""Layers follow the data: extract → raw → core → analysis → quality → report. A lower layer
never imports a higher one, and the clinical rules import none (they are pure functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rescue_pipeline"
ORDER = ("extract", "raw", "core", "analysis", "quality", "report")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("rescue_pipeline.")}


def _layer(module: str) -> str:
    return module.split(".")[1]


@pytest.mark.parametrize("layer", ORDER)
def test_a_layer_imports_no_layer_above_it(layer: str) -> None:
    above = set(ORDER[ORDER.index(layer) + 1 :])
    wrong = sorted(
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in (PACKAGE / layer).rglob("*.py")
        for name in _imports(path)
        if _layer(name) in above
    )
    assert not wrong


def test_the_rules_import_no_layer_at_all() -> None:
    wrong = sorted(
        f"{path.name} imports {name}"
        for path in (PACKAGE / "rules").rglob("*.py")
        for name in _imports(path)
        if _layer(name) in ORDER or _layer(name) in ("warehouse", "dagster_defs")
    )
    assert not wrong
