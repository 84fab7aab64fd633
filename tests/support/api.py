"""Helpers of the ops-center API tests: the ingest's schema and seeded rows in a real store
(SQLite or TimescaleDB), one user per role, a test client per role. The seed itself is
checked by tests/integration/test_api_seed.py, so the helpers fail loudly if the ingest's
schema moves."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import psycopg
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from contract.registry import Registry, load_registry
from ingest.migrations import migrations_for
from ops_center.adapters.postgres import PostgresOpsRepository
from ops_center.adapters.records import AlertRecord, GatewayStatusRecord, IncidentRecord, TimelineEvent
from ops_center.adapters.repository import OpsRepository
from ops_center.adapters.sqlite import SqliteOpsRepository, sqlite_time
from ops_center.api.app import create_app
from ops_center.feed import Feed
from ops_center.security.passwords import Passwords
from ops_center.security.users import add_user
from ops_center.settings import OpsSettings
from tests.support.ports import free_port
from tests.support.waiting import wait_until

REG: Registry = load_registry()
PASSWORD = "correct-horse-battery"
SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
# Fast hashing in tests: the policy and the verification path are the same.
FAST_PASSWORDS = Passwords(__import__("argon2").PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))

# name -> (role, sites). Ward staff of thong-nhat is "the ward user" of the isolation tests.
USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tn-staff": ("ward_staff", ("thong-nhat",)),
    "qt-staff": ("ward_staff", ("quang-trung",)),
    "ax-manager": ("cluster_manager", ("an-xa",)),
    "leader": ("city_leader", ()),
    "admin": ("admin", ()),
}
SITES = ("thong-nhat", "quang-trung", "an-xa")


def settings(**over: Any) -> OpsSettings:
    base: dict[str, Any] = {
        "environment": "production",
        "secret_key": SECRET,
        "overview_cache_s": 0,
        # Functional tests read what they just wrote; the caches' own bounds are tested in
        # tests/unit/test_api_performance.py.
        "principal_cache_s": 0,
        "list_cache_s": 0,
        "kpi_interval_s": 0.2,
    }
    base.update(over)
    return OpsSettings(**base)


# --- the ingest's schema ----------------------------------------------------------------------


def migrate_ingest_pg(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for m in migrations_for("timescaledb"):
            conn.execute(m.sql.encode())


def migrate_ingest_sqlite(path: Path) -> None:
    """The ingest's SQLite migrations, applied statement by statement (only the files: the
    ingest's store classes are not needed to read its tables)."""
    with sqlite3.connect(path) as conn:
        for m in migrations_for("sqlite"):
            buf = ""
            for line in m.sql.splitlines(keepends=True):
                buf += line
                if sqlite3.complete_statement(buf):
                    conn.execute(buf)
                    buf = ""


# --- seeding -------------------------------------------------------------------------------------


@dataclass
class Seed:
    now: datetime
    incidents: dict[str, str] = field(default_factory=dict)  # site -> an open incident id
    alerts: dict[str, str] = field(default_factory=dict)  # site -> an alert id


class Rows:
    """INSERTs into the ingest's tables, for either store."""

    def __init__(self, insert: Callable[[str, Sequence[str], Sequence[Sequence[object]]], None]) -> None:
        self.insert = insert


def pg_rows(url: str) -> Rows:
    def insert(table: str, cols: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        q = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.executemany(q.encode(), [tuple(r) for r in rows])

    return Rows(insert)


def sqlite_rows(path: Path) -> Rows:
    def conv(v: object) -> object:
        return sqlite_time(v) if isinstance(v, datetime) else v

    def insert(table: str, cols: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        q = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['?'] * len(cols))})"
        with sqlite3.connect(path) as conn:
            conn.executemany(q, [tuple(conv(v) for v in r) for r in rows])

    return Rows(insert)


def seed(repo: OpsRepository, rows: Rows, now: datetime | None = None) -> Seed:
    now = now or datetime.now(UTC)
    s = Seed(now=now)
    hour = now.replace(minute=0, second=0, microsecond=0)
    # Readings: every sensor of every site reported 30 s ago (so all online), except the
    # sensors of each site's last gateway, silent for an hour.
    readings: list[list[object]] = []
    for site in REG.spec.sites:
        for i, gw in enumerate(site.gateways):
            age = timedelta(hours=1) if i == len(site.gateways) - 1 else timedelta(seconds=30)
            for sensor in gw.sensors:
                for metric in sensor.metrics:
                    readings.append([now - age, site.id, gw.id, sensor.id, metric, 42.0, "good"])
    # A raw series for the readings route: one value a minute for 2 h.
    for k in range(120):
        readings.append(
            [
                now - timedelta(minutes=k, seconds=5),
                "thong-nhat",
                "tn-gw-01",
                "tn-aq-01",
                "no2",
                float(k),
                "good",
            ]
        )
    rows.insert("readings", ["time", "site", "gateway", "sensor", "metric", "value", "quality"], readings)
    # Rollups: 1 h buckets of PM for 12 h (AQI), 1 m buckets for 2 h.
    r1h: list[list[object]] = []
    for site_id, sensor in (("thong-nhat", "tn-aq-01"), ("quang-trung", "qt-aq-01")):
        pm25 = 40.0 if site_id == "thong-nhat" else 120.0
        for k in range(12):
            for metric, v in (("pm25", pm25), ("pm10", 60.0)):
                r1h.append([hour - timedelta(hours=k), site_id, sensor, metric, v, v, v, 60, v * 60])
    rows.insert(
        "readings_1h", ["bucket", "site", "sensor", "metric", "avg", "min", "max", "count", "sum"], r1h
    )
    r1m = [
        [
            (now - timedelta(minutes=k)).replace(second=0, microsecond=0),
            "thong-nhat",
            "tn-aq-01",
            "pm25",
            float(k),
            float(k),
            float(k),
            1,
            float(k),
        ]
        for k in range(1, 121)
    ]
    rows.insert(
        "readings_1m", ["bucket", "site", "sensor", "metric", "avg", "min", "max", "count", "sum"], r1m
    )
    # Batches: tn-gw-01 seq 1..10 without 5 (a gap), recent; qt-gw-01 complete.
    batches = [
        ["tn-gw-01", q, "thong-nhat", now - timedelta(minutes=11 - q), 5, "stored", b"d"]
        for q in range(1, 11)
        if q != 5
    ]
    batches += [
        ["qt-gw-01", q, "quang-trung", now - timedelta(minutes=11 - q), 5, "stored", b"d"]
        for q in range(1, 11)
    ]
    rows.insert(
        "ingest_batches", ["gateway", "seq", "site", "received_at", "readings", "outcome", "digest"], batches
    )
    rows.insert(
        "dead_letters",
        ["received_at", "topic", "gateway", "site", "reason", "detail", "payload"],
        [
            [
                now - timedelta(minutes=1),
                "smartward/v1/thong-nhat/tn-gw-01/telemetry",
                "tn-gw-01",
                "thong-nhat",
                "bad_json",
                "thong-nhat dead letter",
                b"{not json",
            ],
            [
                now - timedelta(minutes=1),
                "smartward/v1/quang-trung/qt-gw-01/telemetry",
                "qt-gw-01",
                "quang-trung",
                "schema",
                "quang-trung dead letter",
                b"\xff\xfe",
            ],
            [
                now - timedelta(minutes=1),
                "smartward/v1/x/y/telemetry",
                None,
                None,
                "topic_mismatch",
                "no site",
                b"{}",
            ],
        ],
    )
    # Ops rows, through the repository as the ops service writes them.
    for site in SITES:
        prefix = {"thong-nhat": "tn", "quang-trung": "qt", "an-xa": "ax"}[site]
        inc = IncidentRecord(
            id=f"inc-{prefix}-1",
            site=site,
            kind="air_pollution",
            severity="critical",
            state="open",
            title_vi=f"Ô nhiễm {site}",
            title_en=f"Pollution {site}",
            opened_at=now - timedelta(minutes=20),
            updated_at=now - timedelta(minutes=20),
        )
        repo.incidents.upsert_incident(inc)
        repo.incidents.append_timeline(
            TimelineEvent(
                incident_id=inc.id,
                site=site,
                at=inc.opened_at,
                actor="rule:pm25",
                action="opened",
                detail=f"opened {site}",
            )
        )
        alert = AlertRecord(
            id=f"al-{prefix}-1",
            rule="pm25_high",
            site=site,
            severity="critical",
            state="active",
            opened_at=now - timedelta(minutes=21),
            updated_at=now - timedelta(minutes=21),
            gateway=f"{prefix}-gw-01",
            sensor=f"{prefix}-aq-01",
            metric="pm25",
            incident_id=inc.id,
            value=180.0,
            category="air",
            message_vi=f"PM2.5 cao {site}",
            message_en=f"High PM2.5 {site}",
        )
        repo.incidents.upsert_alert(alert)
        repo.gateways.upsert_gateway_status(
            GatewayStatusRecord(
                gateway=f"{prefix}-gw-01",
                site=site,
                state="online",
                last_seen=now,
                outbox_batches=3,
                last_seq=10,
            )
        )
        s.incidents[site] = inc.id
        s.alerts[site] = alert.id
    return s


def add_users(repo: OpsRepository) -> None:
    for name, (role, sites) in USERS.items():
        add_user(
            repo.users, FAST_PASSWORDS, REG, name=name, role=role, sites=sites, password=PASSWORD,
            actor="test",
        )


# --- clients -------------------------------------------------------------------------------------


def build_app(repo: OpsRepository, feed: Feed | None = None, **over: Any) -> FastAPI:
    s = settings(**over)
    feed = feed or Feed(ring_size=s.stream_ring_size, queue_max=s.stream_queue_max)
    return create_app(s, repo, feed, registry=REG, passwords=FAST_PASSWORDS)


def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    r = client.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Env:
    app: FastAPI
    client: TestClient
    repo: OpsRepository
    seed: Seed
    tokens: dict[str, str]


def pg_env(url: str, **over: Any) -> Iterator[Env]:
    migrate_ingest_pg(url)
    repo = PostgresOpsRepository(url, min_size=1, max_size=8)
    repo.open()
    yield from _env(repo, pg_rows(url), **over)


def sqlite_env(path: Path, **over: Any) -> Iterator[Env]:
    migrate_ingest_sqlite(path)
    yield from _env(SqliteOpsRepository(path), sqlite_rows(path), **over)


def _env(repo: OpsRepository, rows: Rows, **over: Any) -> Iterator[Env]:
    """The seeded store, its users and the app over it; the store is closed at the end."""
    try:
        repo.migrate()
        s = seed(repo, rows)
        add_users(repo)
        app = build_app(repo, **over)
        with TestClient(app) as client:
            yield Env(app, client, repo, s, {u: login(client, u) for u in USERS})
    finally:
        repo.close()


class Server:
    """uvicorn serving the app on a free port, in a thread of this process (so a test can
    publish on the app's feed the way the ops service does)."""

    def __init__(self, env: Env) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.feed: Feed = env.app.state.smartward.feed
        config = uvicorn.Config(env.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        wait_until(lambda: bool(self.server.started), 10, "uvicorn to start", max_step_s=0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True  # clients (a browser and its streams) close first
        self.thread.join(10)
