"""Every ``smartward ... --help`` answers, exit 0, whatever extras are installed: each command
path of the argparse tree runs in a subprocess where the optional libraries (httpx, psycopg,
paho, numpy, fastapi, grafana-client...) cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smartward.cli import COMMANDS
from smartward.cli_reference import command_tree, render_markdown

ROOT = Path(__file__).resolve().parents[2]

BLOCKED = ("httpx", "psycopg", "psycopg_pool", "paho", "numpy", "fastapi", "starlette", "uvicorn", "uvloop",
           "grafana_client", "niquests", "amqtt", "influxdb_client", "prometheus_client", "jwt", "argon2",
           "orjson", "httptools", "multipart", "python_multipart")

# Runs the command with a meta path finder in front that refuses the optional libraries.
RUNNER = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, Refuse())
from smartward.cli import main
sys.exit(main(sys.argv[1:]))
"""


PATHS = [path for path, _ in command_tree()]


def test_the_tree_has_every_command() -> None:
    names = {p[0] for p in PATHS if p}
    assert names == set(COMMANDS)
    assert {("db", "grant-readonly"), ("ingest", "status"), ("users", "list"), ("dashboards", "push"),
            ("sim", "evaluate"), ("bench", "ingest")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "smartward")
def test_help_works_without_optional_libraries(path: tuple[str, ...], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", RUNNER, *path, "--help"], cwd=tmp_path, env=env,
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower() or "cách dùng" in result.stdout.lower()
    assert list(tmp_path.iterdir()) == []  # --help creates nothing (no ./smartward.db)


def test_the_command_reference_is_current() -> None:
    """docs/cli.md is rendered from the parsers: regenerate it when they change."""
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == render_markdown(), "python3 -m smartward.cli_reference > docs/cli.md"
