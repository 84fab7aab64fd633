"""Every ``smartward ... --help`` answers, exit 0, whatever extras are installed: each command
path of the argparse tree runs in a subprocess where the optional libraries (httpx, psycopg,
paho, numpy, fastapi, grafana-client...) cannot be imported."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from smartward.bench import BENCHES
from smartward.cli import COMMANDS

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


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_of(main: Any, argv: list[str]) -> argparse.ArgumentParser:
    """The parser ``main(argv)`` builds: captured at its first ``parse_args``."""

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> NoReturn:
        raise _Captured(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", capture)
        try:
            main(argv)
        except _Captured as got:
            return got.parser
    raise AssertionError(f"{main.__module__}.main({argv}) parsed no arguments")


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def command_paths() -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [()]
    for name, (module_name, _) in COMMANDS.items():
        main = importlib.import_module(module_name).main
        if name == "bench":
            paths.append(("bench",))
            for bench, bench_module in BENCHES.items():
                paths += _walk(_parser_of(importlib.import_module(bench_module).main, []), ("bench", bench))
            continue
        paths += _walk(_parser_of(main, []), (name,))
    return paths


PATHS = command_paths()


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
