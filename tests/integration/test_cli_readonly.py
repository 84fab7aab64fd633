"""Read-only commands never create a database: ``smartward ingest status`` and
``smartward users list`` on a URL that names none say so (Vietnamese first), exit non-zero and
leave nothing behind; on a real database they print readable lines, not Python objects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.servers.postgres import PostgresServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def smartward(cwd: Path, db_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTWARD_")}
    env["PYTHONPATH"] = str(ROOT)
    # A broker nobody listens on: status reports it and still answers about the store.
    env["SMARTWARD_MQTT_URL"] = "mqtt://127.0.0.1:9"
    if db_url is not None:
        env["SMARTWARD_DB_URL"] = db_url
    return subprocess.run([sys.executable, "-m", "smartward.cli", *args], cwd=cwd, env=env, check=False,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [("ingest", "status", "--timeout", "1"), ("users", "list")])
def test_default_sqlite_url_without_a_file_is_an_error_and_creates_nothing(tmp_path: Path,
                                                                          command: tuple[str, ...]) -> None:
    result = smartward(tmp_path, None, *command)  # the default: sqlite:///./smartward.db
    assert result.returncode == 1
    assert result.stderr.startswith("Không có cơ sở dữ liệu tại sqlite:///./smartward.db")
    assert "no database at" in result.stderr and "smartward db migrate" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_ingest_status_on_a_migrated_sqlite_database_is_readable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ward.db'}"
    assert smartward(tmp_path, url, "db", "migrate").returncode == 0
    result = smartward(tmp_path, url, "ingest", "status", "--timeout", "1")
    assert "kho / store" in result.stdout and "sẵn sàng / ready" in result.stdout
    assert "KHÔNG kết nối được / UNREACHABLE" in result.stdout  # no broker on port 9
    assert result.returncode == 1
    assert "Completeness(" not in result.stdout and "object at 0x" not in result.stdout
    listed = smartward(tmp_path, url, "users", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("tên/name")


@pytest.mark.parametrize("command", [("ingest", "status", "--timeout", "2"), ("users", "list")])
def test_missing_postgresql_database_is_an_error_and_is_not_created(postgres: PostgresServer, tmp_path: Path,
                                                                   command: tuple[str, ...]) -> None:
    postgres.ensure_running()
    url = postgres.url_for("smartward_nowhere")
    result = smartward(tmp_path, url, *command)
    assert result.returncode == 1
    assert result.stderr.startswith("Không có cơ sở dữ liệu tại postgresql://")
    assert "the server answers but has no such database" in result.stderr
    with psycopg.connect(postgres.url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'smartward_nowhere'").fetchone()
    assert row is None


def test_ingest_status_on_a_migrated_postgresql_database(postgres_db: str, tmp_path: Path) -> None:
    assert smartward(tmp_path, postgres_db, "db", "migrate").returncode == 0
    result = smartward(tmp_path, postgres_db, "ingest", "status", "--timeout", "1")
    assert "sẵn sàng / ready" in result.stdout, result.stdout + result.stderr
    assert "cổng đã xác nhận / gateways with an ack watermark: 0" in result.stdout
