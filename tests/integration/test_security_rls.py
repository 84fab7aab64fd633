"""S7: a ward's read-only database role (its Grafana data source) sees only that ward's rows,
and the city's all-sites role sees every site's (including a site added after the grant);
neither can write. Real queries against TimescaleDB."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest

from ops_center.adapters.postgres import PostgresOpsRepository
from ops_center.security.rls import (
    ALL_SITES_GROUP,
    ALL_SITES_ROLE,
    RlsError,
    apply_rls,
    grant_all_sites,
    grant_readonly,
    role_name,
)
from smartward.db_cli import grant_readonly_main
from tests.servers.timescale import TimescaleServer
from tests.support.api import add_users, migrate_ingest_pg, pg_rows, seed

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
    assert grant_readonly_main(["--all-sites", "--url", db]) == 0
    out = capsys.readouterr().out
    assert f"role={ALL_SITES_ROLE}" in out and "password=" in out
    for bad in (["--url", db], ["--site", "thong-nhat", "--all-sites", "--url", db]):
        with pytest.raises(SystemExit) as exc:
            grant_readonly_main(bad)
        assert exc.value.code == 2  # argparse: exactly one of --site, --all-sites


WRITES = (
    "INSERT INTO readings VALUES (now(), 'thong-nhat', 'tn-gw-01', 'tn-aq-01', 'pm25', 1, 'good')",
    "INSERT INTO sites (id, name_vi, name_en, kind) VALUES ('x-site', 'x', 'x', 'ward')",
    "UPDATE incidents SET state = 'resolved'",
    "DELETE FROM alerts",
    "TRUNCATE sensors",
    "CREATE TABLE smuggled (site text)",
)


def owner_sites(db: str, table: str) -> set[str]:
    column = "id" if table == "sites" else "site"
    with psycopg.connect(db) as conn:
        return {r[0] for r in conn.execute(f"SELECT DISTINCT {column} FROM {table}").fetchall()}


def test_all_sites_role_reads_every_site_even_one_added_later(timescale: TimescaleServer, db: str) -> None:
    ward_role, ward_pw = grant_readonly(db, "thong-nhat")
    role, password = grant_all_sites(db)
    assert role == ALL_SITES_ROLE == "smartward_ro_city"
    city = as_role(timescale, db, role, password)
    with psycopg.connect(city) as conn:
        for table in (*SCOPED, "sites"):
            column = "id" if table == "sites" else "site"
            sites = {r[0] for r in conn.execute(f"SELECT DISTINCT {column} FROM {table}").fetchall()}
            assert sites == owner_sites(db, table), table
        assert {r[0] for r in conn.execute("SELECT id FROM sites").fetchall()} == {
            "thong-nhat", "quang-trung", "an-xa"}
    # A site registered after the grant, with a reading old enough to open a new chunk: no
    # re-grant, no migrate, and the city role reads it; the ward role still does not.
    with psycopg.connect(db) as conn:
        chunks = "SELECT count(*) FROM show_chunks('readings')"
        chunks_before = conn.execute(chunks).fetchone()
        conn.execute(
            "INSERT INTO sites (id, name_vi, name_en, kind) VALUES ('nam-moi', 'Mới', 'New', 'ward')"
        )
        conn.execute("INSERT INTO gateways (id, site) VALUES ('nm-gw-01', 'nam-moi')")
        conn.execute(
            "INSERT INTO readings VALUES (now() - interval '400 days', 'nam-moi', 'nm-gw-01', 'nm-aq-01', "
            "'pm25', 7, 'good')"
        )
        assert conn.execute(chunks).fetchone() != chunks_before  # a new chunk, created after the grant
    with psycopg.connect(city) as conn:
        assert ("nam-moi",) in conn.execute("SELECT id FROM sites").fetchall()
        assert conn.execute("SELECT value FROM readings WHERE site = 'nam-moi'").fetchall() == [(7.0,)]
        assert conn.execute("SELECT site FROM gateways WHERE id = 'nm-gw-01'").fetchall() == [("nam-moi",)]
        # Its own mapping is empty: the reach comes from the group, not from rows per site.
        assert conn.execute("SELECT count(*) FROM smartward_rls_sites").fetchone() == (0,)
    # Ward roles keep their semantics (the ward policy is unchanged).
    with psycopg.connect(as_role(timescale, db, ward_role, ward_pw)) as conn:
        for table in SCOPED:
            sites = {r[0] for r in conn.execute(f"SELECT DISTINCT site FROM {table}").fetchall()}
            assert sites <= {"thong-nhat"}, (table, sites)
        assert {r[0] for r in conn.execute("SELECT id FROM sites").fetchall()} == {"thong-nhat"}
        assert conn.execute("SELECT count(*) FROM readings WHERE site = 'nam-moi'").fetchone() == (0,)


@pytest.mark.parametrize("kind", ["city", "ward"])
def test_read_only_roles_cannot_write_even_in_a_read_write_transaction(
    timescale: TimescaleServer, db: str, kind: str
) -> None:
    role, password = grant_all_sites(db) if kind == "city" else grant_readonly(db, "thong-nhat")
    ro = as_role(timescale, db, role, password)
    with psycopg.connect(db) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in ("readings", "alerts")}
    admin = ("SELECT * FROM users", "SELECT * FROM audit_log", "SELECT * FROM dead_letters")
    for statement in (*WRITES, *admin):
        with psycopg.connect(ro, autocommit=True) as conn:
            # transaction_read_only is only a default a session can turn off: privileges are
            # what must refuse.
            conn.execute("SET default_transaction_read_only = off")
            assert conn.execute("SHOW transaction_read_only").fetchone() == ("off",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(db) as conn:
        assert {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in counts} == counts


def test_ward_and_all_sites_roles_do_not_mix(db: str) -> None:
    grant_all_sites(db)
    with pytest.raises(RlsError, match="all-sites"):
        grant_readonly(db, "city")  # smartward_ro_city is taken by the city
    grant_all_sites(db)  # re-keying it is fine


def test_all_sites_role_refuses_a_ward_role_of_the_same_name(db: str) -> None:
    # Roles are per cluster, not per database: another test's city role may exist already.
    with psycopg.connect(db) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ALL_SITES_ROLE,)).fetchone():
            conn.execute(f"REVOKE {ALL_SITES_GROUP} FROM {ALL_SITES_ROLE}")
    grant_readonly(db, "city")
    with pytest.raises(RlsError, match="ward role"):
        grant_all_sites(db)
