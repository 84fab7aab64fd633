"""S7: a ward's read-only database role (its Grafana data source) sees only that ward's rows,
with real queries against TimescaleDB."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest

from ops_center.adapters.postgres import PostgresOpsRepository
from ops_center.security.rls import apply_rls, grant_readonly, grant_readonly_main, role_name
from tests.integration.test_api_support import add_users, migrate_ingest_pg, pg_rows, seed
from tests.servers.timescale import TimescaleServer

pytestmark = pytest.mark.integration

SCOPED = (
    "readings",
    "readings_1m",
    "readings_1h",
    "sensors",
    "gateways",
    "alerts",
    "incidents",
    "incident_events",
    "gateway_status",
    "ingest_batches",
    "maintenance_windows",
)


@pytest.fixture
def db(timescale: TimescaleServer) -> Iterator[str]:
    timescale.ensure_running()
    url = timescale.fresh_db("rls")
    migrate_ingest_pg(url)
    with PostgresOpsRepository(url) as repo:
        repo.migrate()
        seed(repo, pg_rows(url))
        add_users(repo)
    # The registry tables are filled by the ingest's registry sync; a few rows do here.
    with psycopg.connect(url) as conn:
        for site in ("thong-nhat", "quang-trung", "an-xa"):
            conn.execute(
                "INSERT INTO sites (id, name_vi, name_en, kind) VALUES (%s, %s, %s, 'ward')",
                (site, site, site),
            )
            gw = {"thong-nhat": "tn", "quang-trung": "qt", "an-xa": "ax"}[site] + "-gw-01"
            conn.execute("INSERT INTO gateways (id, site) VALUES (%s, %s)", (gw, site))
            conn.execute(
                "INSERT INTO sensors (id, gateway, site, kind, metrics, interval_s, name_vi, name_en) "
                "VALUES (%s, %s, %s, 'air_quality', '{pm25}', 60, 'x', 'x')",
                (gw + "-s", gw, site),
            )
    yield url


def as_role(server: TimescaleServer, url: str, role: str, password: str) -> str:
    dbname = url.rsplit("/", 1)[1]
    return f"postgresql://{role}:{quote(password)}@{server.host}:{server.port}/{dbname}"


def test_ward_role_sees_only_its_ward(timescale: TimescaleServer, db: str) -> None:
    role, password = grant_readonly(db, "thong-nhat")
    assert role == role_name("thong-nhat")
    other_role, other_pw = grant_readonly(db, "quang-trung")
    with psycopg.connect(as_role(timescale, db, role, password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
        for table in SCOPED:
            sites = {r[0] for r in conn.execute(f"SELECT DISTINCT site FROM {table}").fetchall()}
            assert sites <= {"thong-nhat"}, (table, sites)
        assert {r[0] for r in conn.execute("SELECT id FROM sites").fetchall()} == {"thong-nhat"}
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] > 0  # type: ignore[index]
        # What a Grafana panel runs: time_bucket over the hypertable.
        rows = conn.execute(
            "SELECT time_bucket('1 hour', time) AS t, site, avg(value) FROM readings GROUP BY 1, 2"
        ).fetchall()
        assert rows and {r[1] for r in rows} == {"thong-nhat"}
        # Asking for another ward's rows by name gives nothing.
        n = conn.execute("SELECT count(*) FROM readings WHERE site = 'quang-trung'").fetchone()
        assert n == (0,)
        assert conn.execute("SELECT count(*) FROM metrics").fetchone() is not None
    with psycopg.connect(as_role(timescale, db, other_role, other_pw)) as conn:
        sites = {r[0] for r in conn.execute("SELECT DISTINCT site FROM alerts").fetchall()}
        assert sites == {"quang-trung"}
    # The owner (the services) still sees every site.
    with psycopg.connect(db) as conn:
        sites = {r[0] for r in conn.execute("SELECT DISTINCT site FROM readings").fetchall()}
        assert sites == {"thong-nhat", "quang-trung", "an-xa"}


def test_ward_role_cannot_write_nor_read_admin_tables_nor_chunks(timescale: TimescaleServer, db: str) -> None:
    role, password = grant_readonly(db, "thong-nhat")
    with psycopg.connect(db) as conn:
        chunks = [r[0] for r in conn.execute("SELECT show_chunks('readings')::text").fetchall()]
    assert chunks
    ro = as_role(timescale, db, role, password)
    for statement in (
        "SELECT * FROM users",
        "SELECT * FROM audit_log",
        "SELECT * FROM dead_letters",
        "SELECT * FROM security_events",
        "INSERT INTO readings VALUES (now(), 'thong-nhat', 'tn-gw-01', 'tn-aq-01', 'pm25', 1, 'good')",
        "UPDATE incidents SET state = 'resolved'",
        "DELETE FROM alerts",
    ):
        with psycopg.connect(ro) as conn, pytest.raises(psycopg.Error):
            conn.execute(statement)
    # A hypertable's chunks are tables of their own: reading one directly must not bypass
    # the policies (TimescaleDB copies grants to chunks, not policies).
    for chunk in chunks:
        with psycopg.connect(ro) as conn:
            try:
                rows = conn.execute(f"SELECT DISTINCT site FROM {chunk}").fetchall()
            except psycopg.errors.InsufficientPrivilege:
                continue
            assert {r[0] for r in rows} <= {"thong-nhat"}, (chunk, rows)


def test_apply_rls_is_idempotent_and_regrant_rekeys(timescale: TimescaleServer, db: str) -> None:
    with psycopg.connect(db) as conn:
        first = apply_rls(conn)
        second = apply_rls(conn)
    assert first == second and set(SCOPED) <= set(first) and "sites" in first
    role, pw1 = grant_readonly(db, "an-xa")
    role2, pw2 = grant_readonly(db, "an-xa")
    assert role == role2 and pw1 != pw2
    with psycopg.connect(as_role(timescale, db, role, pw2)) as conn:
        assert {r[0] for r in conn.execute("SELECT DISTINCT site FROM incidents").fetchall()} == {"an-xa"}


def test_grant_readonly_command(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert grant_readonly_main(["--site", "thong-nhat", "--url", db]) == 0
    out = capsys.readouterr().out
    assert "role=smartward_ro_thong_nhat" in out and "password=" in out
    assert grant_readonly_main(["--site", "Bad Site", "--url", db]) == 1
    assert grant_readonly_main(["--site", "x", "--url", "sqlite:///x.db"]) == 1
