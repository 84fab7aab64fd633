"""The ops center's layers (docs/design.md, "Walks through the code"): the domain does no I/O and
imports neither the service, the adapters nor the API; the service never imports the API (the
feed carries records, the stream route renders them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "ops_center"

FORBIDDEN = {
    "domain": ("ops_center.api", "ops_center.service", "ops_center.adapters", "ops_center.security"),
    "service": ("ops_center.api",),
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package: str) -> None:
    bad = [(str(p.relative_to(ROOT.parent)), name)
           for p in sorted((ROOT / package).rglob("*.py"))
           for name in sorted(imported(p))
           if name.startswith(FORBIDDEN[package])]
    assert bad == []


def test_the_feed_imports_no_api() -> None:
    assert not [n for n in imported(ROOT / "feed.py") if n.startswith("ops_center.")]
