"""The ops store's import rules (docs/design.md, "Ops store"), read from the source (AST), so
that a new import breaks a test before it makes a circle:
- ``ops_center/adapters`` never imports ``security``, ``api`` or ``service``;
- the port modules import no implementation (``sql*``, ``sqlite``, ``postgres``, ``factory``);
- ``security`` reaches the adapters through ports, records and errors only;
- no import circle among the modules of ``adapters``, ``security`` and ``domain.roles``,
  counting imports inside functions too (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = "ops_center.adapters"
PORTS = frozenset(
    f"{ADAPTERS}.{m}"
    for m in (
        "errors", "ports", "records", "repository", "commands", "notifications", "sessions", "observations"
    )
)
IMPLEMENTATIONS = ("sql", "sqlite", "postgres", "factory")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m.startswith("ops_center")}


def _graph(*packages: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in packages:
        folder = ROOT.joinpath(*package.split("."))
        files = sorted(folder.glob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
        for path in files:
            graph[_module(path)] = _imports(path)
    return graph


def _is_implementation(module: str) -> bool:
    if not module.startswith(ADAPTERS + "."):
        return False
    name = module.removeprefix(ADAPTERS + ".")
    return name in IMPLEMENTATIONS or name.startswith("sql_")


def test_adapters_import_neither_security_nor_api_nor_service() -> None:
    bad = {
        (m, i)
        for m, imports in _graph(ADAPTERS).items()
        for i in imports
        if i.startswith(("ops_center.security", "ops_center.api", "ops_center.service"))
    }
    assert not bad, bad


def test_ports_import_no_implementation() -> None:
    graph = _graph(ADAPTERS)
    assert graph.keys() >= PORTS, PORTS - graph.keys()
    bad = {(m, i) for m in PORTS for i in graph[m] if _is_implementation(i)}
    assert not bad, bad


def test_security_reaches_the_adapters_through_ports_only() -> None:
    bad = {
        (m, i)
        for m, imports in _graph("ops_center.security").items()
        for i in imports
        if i.startswith(ADAPTERS) and i not in PORTS
    }
    assert not bad, bad


def test_no_import_circle_among_adapters_security_and_roles() -> None:
    graph = _graph(ADAPTERS, "ops_center.security", "ops_center.domain.roles")
    edges = {m: {i for i in imports if i in graph} for m, imports in graph.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(module):], module]))
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
