"""Every import goes one way (docs/design.md, "Layers and import rules").

The rules are read from the source with ``ast`` (no module is imported): for each module of the
project, the project modules it imports, at any depth of the file (imports inside functions
count too: a lazy import is still a dependency). A rule names a layer (a package or a module
prefix) and the layers it may import; everything not named is forbidden. The few exceptions
are named below with their reason. Third-party I/O libraries are checked for the pure layers,
MQTT for the layers that must not speak it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("contract", "mqttlink", "edge", "ingest", "ops_center", "dashboards", "feeds", "simulators")
PROJECT = (*PRODUCT, "bench", "smartward")
NEVER_IMPORTED = ("tests",)  # by any package of PROJECT

_OPS_INNER = (
    "ops_center.domain", "ops_center.adapters", "ops_center.security", "ops_center.notify",
    "ops_center.service", "ops_center.feed", "ops_center.rulebook", "ops_center.settings",
    "ops_center.messages", "ops_center.commands", "ops_center.web",
)

# Layer → the layers it may import besides itself. The longest matching prefix names a
# module's layer; importing a package's ``__init__`` through one of its submodules is implied.
ALLOWED: dict[str, frozenset[str]] = {
    "contract": frozenset(),
    "mqttlink": frozenset({"contract"}),
    "edge": frozenset({"contract", "mqttlink", "edge.drivers.simulated"}),
    # The simulated driver (docs/edge-devices.md) runs the simulators' fleet in the edge process.
    "edge.drivers.simulated": frozenset({"contract", "mqttlink", "edge", "simulators"}),
    "ingest": frozenset({"contract", "mqttlink"}),
    "feeds": frozenset({"contract"}),
    "dashboards": frozenset({"contract"}),
    "simulators": frozenset({"contract"}),
    # ops_center, inside out
    "ops_center.domain": frozenset({"contract"}),
    "ops_center.messages": frozenset(),
    "ops_center.feed": frozenset(),
    "ops_center.web": frozenset(),
    "ops_center.rulebook": frozenset({"contract", "ops_center.domain"}),
    "ops_center.adapters": frozenset({"contract", "ops_center.domain"}),
    "ops_center.security": frozenset({
        "contract", "ops_center.domain", "ops_center.adapters", "ops_center.feed",
    }),
    "ops_center.settings": frozenset({"contract", "ops_center.security"}),
    "ops_center.notify": frozenset({"contract", "ops_center.domain", "ops_center.adapters"}),
    "ops_center.commands": frozenset({
        "contract", "mqttlink", "ops_center.adapters", "ops_center.feed", "ops_center.settings",
    }),
    "ops_center.service": frozenset({
        "contract", "mqttlink", "ops_center.domain", "ops_center.adapters", "ops_center.notify",
        "ops_center.security", "ops_center.feed", "ops_center.rulebook", "ops_center.settings",
    }),
    # No mqttlink: the API reaches the devices through ops_center.commands.
    "ops_center.api": frozenset({"contract", *_OPS_INNER}),
    # The composition roots (ops_center/cli.py, mqtt_cli.py, users_cli.py): all of ops_center.
    "ops_center": frozenset({"contract", "mqttlink", "ops_center"}),
    # The tools: anything.
    "bench": frozenset(PROJECT),
    "smartward": frozenset(PROJECT),
}

# (importing module, imported module) → why the rule above does not hold there.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("edge.cli", "smartward.cli"): "`python -m edge.cli` delegates to `smartward edge` "
    "(one logging set-up), under `if __name__ == '__main__'` only",
    ("ops_center.cli", "smartward.cli"): "`python -m ops_center.cli` delegates to `smartward ops`, "
    "under `if __name__ == '__main__'` only",
    ("ingest.cli", "smartward.db_probe"): "`ingest status` never creates a database: the shared "
    "probe is a leaf module (test_the_excepted_db_probe_is_a_leaf)",
    ("ops_center.users_cli", "smartward.db_probe"): "`users list` never creates a database: the "
    "shared probe is a leaf module (test_the_excepted_db_probe_is_a_leaf)",
}

# Pure layers: no I/O library (a module or a package and its submodules). YAML is a parser,
# not I/O: contract reads its registry with it; urllib.parse parses broker URLs.
NETWORK_AND_STORES = (
    "psycopg", "psycopg_pool", "sqlite3", "paho", "pika", "aiormq", "httpx", "requests",
    "urllib.request", "http.client", "http.server", "smtplib", "fastapi", "starlette", "uvicorn",
    "socket", "ssl", "asyncio", "influxdb_client", "redis", "prometheus_client", "mqttlink",
)
PURE: dict[str, tuple[str, ...]] = {
    "contract": NETWORK_AND_STORES,
    "ops_center.domain": (*NETWORK_AND_STORES, "yaml", "threading", "subprocess"),
}
# Who speaks no MQTT at all (docs/design.md "Components").
NO_MQTT = ("contract", "ops_center.api")
MQTT = ("paho", "mqttlink")

ADAPTERS = "ops_center.adapters"
PORTS = frozenset(
    f"{ADAPTERS}.{m}"
    for m in ("errors", "ports", "records", "repository", "commands", "notifications", "sessions",
              "observations")
)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _top(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def _is_project(module: str) -> bool:
    return _top(module) in (*PROJECT, *NEVER_IMPORTED)


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(path: Path) -> Iterator[Edge]:
    """Every import of the file, at any depth. ``from a import b`` is an edge to ``a.b`` when
    that is a module of the project, else to ``a``."""
    src = _module_name(path)
    package = src if path.name == "__init__.py" else src.rpartition(".")[0]
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(src, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield Edge(src, sub if _is_project(sub) and _exists(sub) else target, node.lineno)


def _sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops or PROJECT if (ROOT / top).is_dir() for p in (ROOT / top).rglob("*.py"))


def _edges(*tops: str) -> list[Edge]:
    return [e for p in _sources(*tops) for e in _imports(p)]


def _layer(module: str) -> str | None:
    best: str | None = None
    for layer in ALLOWED:
        if (module == layer or module.startswith(layer + ".")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def _within(layer: str, allowed: Iterable[str]) -> bool:
    return any(layer == a or layer.startswith(a + ".") for a in allowed)


def violations(edges: Iterable[Edge]) -> list[str]:
    """The edges against ALLOWED (project modules only, the named exceptions left out)."""
    wrong: list[str] = []
    for edge in edges:
        if not _is_project(edge.target) or (edge.source, edge.target) in EXCEPTIONS:
            continue
        src_layer, dst_layer = _layer(edge.source), _layer(edge.target)
        if src_layer is None:
            wrong.append(f"{edge.source}:{edge.line}: in no layer")
        elif dst_layer is None:  # tests, or a package no rule names
            wrong.append(f"{edge.source}:{edge.line}: {src_layer} → {edge.target} (no layer)")
        elif dst_layer != src_layer and not _within(dst_layer, ALLOWED[src_layer]):
            wrong.append(f"{edge.source}:{edge.line}: {src_layer} → {edge.target} ({dst_layer})")
    return sorted(set(wrong))


def test_every_project_import_goes_one_way() -> None:
    wrong = violations(_edges())
    assert not wrong, "imports against docs/design.md's direction:\n" + "\n".join(wrong)


def test_every_exception_is_still_needed() -> None:
    seen = {(e.source, e.target) for e in _edges()}
    assert not set(EXCEPTIONS) - seen, "exceptions no import needs any more: remove them"


def _under_main_guard(path: Path) -> set[int]:
    """The lines of the imports under ``if __name__ == "__main__":`` at the top of the file."""
    lines: set[int] = set()
    for node in _tree(path).body:
        test = node.test if isinstance(node, ast.If) else None
        if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
                and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)):
            lines |= {n.lineno for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)}
    return lines


def test_the_excepted_delegations_run_only_as_scripts() -> None:
    for source, target in EXCEPTIONS:
        if target != "smartward.cli":
            continue
        path = ROOT.joinpath(*source.split(".")).with_suffix(".py")
        lines = {e.line for e in _imports(path) if e.target == target}
        assert lines and lines <= _under_main_guard(path), (source, lines)


def test_the_excepted_db_probe_is_a_leaf() -> None:
    imported = [e.target for e in _edges("smartward") if e.source == "smartward.db_probe"]
    assert imported and not [m for m in imported if _is_project(m)], imported


@pytest.mark.parametrize("layer", sorted(PURE))
def test_pure_layers_import_no_io_library(layer: str) -> None:
    wrong = [f"{e.source}:{e.line}: {e.target}" for e in _edges(_top(layer))
             if _layer(e.source) == layer and _within(e.target, PURE[layer])]
    assert not wrong, f"{layer} must do no I/O:\n" + "\n".join(wrong)


@pytest.mark.parametrize("layer", NO_MQTT)
def test_contract_and_the_api_speak_no_mqtt(layer: str) -> None:
    wrong = [f"{e.source}:{e.line}: {e.target}" for e in _edges(_top(layer))
             if _layer(e.source) == layer and _within(e.target, MQTT)]
    assert not wrong, "\n".join(wrong)


def test_only_mqttlink_builds_paho_clients() -> None:
    builders = sorted({
        str(path.relative_to(ROOT))
        for path in _sources(*PRODUCT, "smartward")
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "Client" and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "mqtt"
    })
    assert builders == ["mqttlink/client.py"]


def test_ports_import_no_implementation() -> None:
    modules = {_module_name(p) for p in _sources("ops_center") if _module_name(p).startswith(ADAPTERS)}
    assert modules >= PORTS, PORTS - modules

    def implementation(m: str) -> bool:
        name = m.removeprefix(ADAPTERS + ".")
        return m.startswith(ADAPTERS + ".") and (name in ("sql", "sqlite", "postgres", "factory")
                                                 or name.startswith("sql_"))

    bad = sorted({(e.source, e.target) for e in _edges("ops_center")
                  if e.source in PORTS and implementation(e.target)})
    assert not bad, bad


def test_security_reaches_the_adapters_through_ports_only() -> None:
    bad = sorted({(e.source, e.target) for e in _edges("ops_center")
                  if _layer(e.source) == "ops_center.security" and e.target.startswith(ADAPTERS)
                  and e.target not in PORTS})
    assert not bad, bad


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            found = visit(target, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_no_import_circle_among_adapters_security_and_roles() -> None:
    """Counting lazy imports: a circle there broke start-up once (docs/design.md, "Ops store")."""
    inside = ("ops_center.adapters", "ops_center.security", "ops_center.domain.roles")
    graph: dict[str, set[str]] = {}
    for e in _edges("ops_center"):
        if _within(e.source, inside) and _within(e.target, inside) and e.target != e.source:
            graph.setdefault(e.source, set()).add(e.target)
    circle = _circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or ())


def test_the_rules_see_the_imports_they_judge() -> None:
    """The walker and the judge themselves, so that an empty result above means the rules
    hold, not that nothing was seen: known edges of the project are found (a lazy one among
    them), and edges that break the rules are reported."""
    edges = {(e.source, e.target) for e in _edges()}
    assert ("ingest.cli", "contract.errors") in edges or any(
        s.startswith("ingest") and t.startswith("contract") for s, t in edges)
    assert any(s.startswith("ops_center.api") and t.startswith("ops_center.domain") for s, t in edges)
    assert ("ingest.cli", "smartward.db_probe") in edges  # inside a function
    assert ("edge.drivers.simulated", "simulators.fleet") in edges
    broken = [
        Edge("ops_center.domain.aqi", "ops_center.adapters.records", 1),
        Edge("ops_center.service.kpi", "ops_center.api.schemas", 1),
        Edge("ops_center.notify.sender", "ops_center.service.settings", 1),
        Edge("ops_center.adapters.sql", "ops_center.security.tokens", 1),
        Edge("ops_center.api.app", "mqttlink.link", 1),
        Edge("ingest.cli", "ops_center.domain", 1),
        Edge("edge.cli", "simulators.fleet", 1),
        Edge("contract.models", "mqttlink.ids", 1),
        Edge("ops_center.service.kpi", "bench.alerts", 1),
        Edge("smartward.cli", "tests.support.api", 1),
    ]
    assert len(violations(broken)) == len(broken), violations(broken)
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
