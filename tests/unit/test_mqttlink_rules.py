"""The import rules of docs/design.md "Components" for MQTT: only ``mqttlink/`` builds paho
clients, ``mqttlink/`` imports no component, ``contract/`` and ``ops_center/api/`` speak no MQTT."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("contract", "mqttlink", "edge", "ingest", "ops_center", "dashboards", "simulators",
           "smartward", "feeds")
COMPONENTS = {"edge", "ingest", "ops_center", "dashboards", "simulators", "smartward", "feeds"}


def _modules(*packages: str) -> list[tuple[Path, ast.Module]]:
    out = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            out.append((path, ast.parse(path.read_text(encoding="utf-8"), str(path))))
    return out


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_only_mqttlink_builds_paho_clients() -> None:
    builders = []
    for path, tree in _modules(*PRODUCT):
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "Client" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "mqtt"):
                builders.append(str(path.relative_to(ROOT)))
    assert builders == ["mqttlink/client.py"]


def test_mqttlink_imports_no_component_and_contract_and_the_api_speak_no_mqtt() -> None:
    for path, tree in _modules("mqttlink"):
        assert not {n.split(".")[0] for n in _imports(tree)} & COMPONENTS, path
    for path, tree in _modules("contract", "ops_center/api"):
        roots = {n.split(".")[0] for n in _imports(tree)}
        assert not roots & {"paho", "mqttlink"}, path
