"""The backup and restore of docs/install.md, as an operator runs it: ``pg_dump -Fc`` of a
migrated store with readings, rollups, the registry and a user, ``pg_restore`` into a fresh
database (TimescaleDB between ``timescaledb_pre_restore()`` and ``timescaledb_post_restore()``),
and every row is back. The server's own pg_dump and pg_restore (versions match)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.stores.postgres import PostgresStore
from smartward.db_cli import migrate
from tests.integration.test_store_postgres import many_batches
from tests.servers.postgres import PostgresServer
from tests.unit.test_store_contract import refresh

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]
TABLES = ("readings", "readings_1m", "readings_1h", "ingest_batches", "sites", "gateways", "sensors", "users")


def counts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        out: dict[str, Any] = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in TABLES}
        out["sum"] = conn.execute("SELECT round(sum(value)::numeric, 3), min(time), max(time) FROM readings"
                                  ).fetchone()
    return out


def tool(server: PostgresServer, program: str, *args: str, stdin: bytes | None = None) -> bytes:
    commands = server._commands
    argv = commands.argv(program, "-h", server.host, "-p", str(server.port), "-U", "postgres", *args)
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=dict(commands.env), timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.mark.parametrize("flavor", ["postgres", "timescale"])
def test_pg_dump_of_a_migrated_store_restores_every_row(flavor: str, request: pytest.FixtureRequest) -> None:
    server: PostgresServer = request.getfixturevalue(flavor)
    server.ensure_running()
    url = server.fresh_db("backup")
    migrate(url, None)
    with PostgresStore(url) as store:
        assert store.write(many_batches(30), []).stored_readings == 3000
        refresh(store)
    subprocess.run([sys.executable, "-m", "smartward.cli", "users", "add", "chu-tich",
                    "--role", "city_leader", "--password-stdin"],
                   input=b"mat-khau-dai-du-manh-2026\n", check=True, timeout=120,
                   env={**os.environ, "SMARTWARD_DB_URL": url, "PYTHONPATH": str(REPO)}, capture_output=True)
    before = counts(url)
    assert before["readings"] == (3000,) and before["users"] == (1,) and before["readings_1m"][0] > 0

    dump = tool(server, "pg_dump", "-Fc", "-d", url.rsplit("/", 1)[1])
    target = server.fresh_db("restored")
    timescale = flavor == "timescale"
    if timescale:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute("SELECT timescaledb_pre_restore()")
    tool(server, "pg_restore", "-d", target.rsplit("/", 1)[1], "--exit-on-error", stdin=dump)
    if timescale:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("SELECT timescaledb_post_restore()")

    assert counts(target) == before
    # The restored store takes new data: its unique keys and sequences came back too.
    with PostgresStore(target) as store:
        again = store.write(many_batches(30), [])
        assert again.stored_readings == 0  # every reading is already there
        later = many_batches(1, first_seq=100, start=before["sum"][2] + timedelta(hours=1))
        assert store.write(later, []).stored_batches == 1
