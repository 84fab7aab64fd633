"""The store of ``smartward bench api``: seeded like a day of a running city (the API serving it
runs in ``bench/api_server.py``).

The seed, for every site of the registry:

- readings of every (sensor, metric) at the sensor's interval for ``hours`` (the last
  gateway of each site silent for the last 20 minutes, so some sensors are offline), and
  hourly means (``readings_1h``) for the same span (the AQI reads 12 of them);
- one ingest batch per gateway every 5 s (the edge's flush interval) over the same span (24 h
  by default: the completeness window), with a few seq gaps, and a dead letter per gateway;
- ``incident_days`` of incident history, ~8 incidents a site a day, each with alerts and
  timeline events; the last dozen of each site still open or acknowledged.

Everything is written in bulk with SQL (COPY on PostgreSQL): the ops tables as the
repository's migrations define them, the ingest's tables as ``smartward db migrate``
creates them.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import psycopg
from argon2 import PasswordHasher

from contract.registry import Registry
from ops_center.adapters.sqlite import path_from_url, sqlite_time
from ops_center.security.passwords import Passwords
from ops_center.security.users import add_user

BATCH_EVERY_S: Final = 5  # the edge's flush interval
SILENT: Final = timedelta(minutes=20)  # the last gateway of each site
INCIDENTS_PER_SITE_DAY: Final = 8
OPEN_PER_SITE: Final = 12
BENCH_USER: Final = "bench-ward"
BENCH_PASSWORD: Final = "bench-" + "password-123"
KINDS: Final = ("air_pollution", "flooding", "noise", "lighting_fault", "gateway_offline")
SEVERITIES: Final = ("info", "warning", "critical", "emergency")

Row = dict[str, object]  # column -> value


@dataclass(frozen=True, slots=True)
class SeedSummary:
    readings: int
    hourly: int
    batches: int
    incidents: int
    alerts: int
    events: int
    site: str
    user: str
    password: str


class _Writer:
    """Bulk rows into one database, one transaction per table; the columns are the keys of
    the first row."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite:")

    def insert(self, table: str, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        cols = list(rows[0])
        if self.sqlite:
            q = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['?'] * len(cols))})"
            values = [
                tuple(sqlite_time(v) if isinstance(v, datetime) else v for v in r.values()) for r in rows
            ]
            with contextlib.closing(sqlite3.connect(path_from_url(self.url))) as lite, lite:
                lite.executemany(q, values)
        else:
            with psycopg.connect(self.url) as pg, pg.cursor() as cur:
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN".encode()) as copy:
                    for r in rows:
                        copy.write_row(tuple(r.values()))
                cur.execute(f"ANALYZE {table}".encode())
        return len(rows)


def seed_store(
    url: str,
    registry: Registry,
    *,
    site: str,
    registry_path: Path | None = None,
    now: datetime | None = None,
    hours: int = 24,
    incident_days: int = 90,
    rng_seed: int = 7,
    users: int = 1,
) -> SeedSummary:
    """Migrate ``url`` (every component, as ``smartward db migrate``; ``registry`` is the one
    loaded from ``registry_path``), seed ``hours`` of readings and batches and
    ``incident_days`` of incidents, and add the bench user (ward staff of ``site``) and
    ``users`` - 1 more ward users of ``site`` (``bench_users``: each screen of the bench
    presents its own user's token, as in a ward office)."""
    from ops_center.adapters.factory import open_repository
    from smartward.db_cli import migrate

    now = now or datetime.now(UTC)
    rng = random.Random(rng_seed)
    migrate(url, None if registry_path is None else str(registry_path))
    w = _Writer(url)
    readings, hourly = _readings(registry, now, hours, rng)
    n_readings, n_hourly = w.insert("readings", readings), w.insert("readings_1h", hourly)
    del readings, hourly
    batches, dead = _batches(registry, now, hours, rng)
    n_batches = w.insert("ingest_batches", batches)
    w.insert("dead_letters", dead)
    del batches
    incidents, alerts, events = _incidents(registry, now, incident_days, rng)
    n_incidents, n_alerts, n_events = (
        w.insert("incidents", incidents),
        w.insert("alerts", alerts),
        w.insert("incident_events", events),
    )
    repo = open_repository(url)
    try:
        add_user(
            repo.users,
            Passwords(),
            registry,
            name=BENCH_USER,
            role="ward_staff",
            sites=[site],
            password=BENCH_PASSWORD,
            actor="bench",
        )
        # They never log in (the bench mints their tokens): the cheapest argon2 will do.
        cheap = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        for name in bench_users(users)[1:]:
            add_user(
                repo.users,
                cheap,
                registry,
                name=name,
                role="ward_staff",
                sites=[site],
                password=BENCH_PASSWORD,
                actor="bench",
            )
    finally:
        repo.close()
    return SeedSummary(
        n_readings, n_hourly, n_batches, n_incidents, n_alerts, n_events, site, BENCH_USER, BENCH_PASSWORD
    )


def bench_users(n: int) -> list[str]:
    return [BENCH_USER] + [f"{BENCH_USER}-{i}" for i in range(2, max(1, n) + 1)]


def screen_tokens(secret_key: str, site: str, *, users: int, screens: int) -> list[str]:
    """One access token per screen, signed as the server signs them, for the bench users
    in turn (screen i is user i mod ``users``): every screen presents its own token, as
    after each one's own login (logging 200 screens in would trip the login rate limit)."""
    from ops_center.security.tokens import TokenService
    from ops_center.settings import OpsSettings

    settings = OpsSettings(environment="production", secret_key=secret_key)
    tokens = TokenService(
        settings.signing_key(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl_s=settings.access_token_ttl_s,
        refresh_ttl_s=settings.refresh_token_ttl_s,
    )
    names = bench_users(users)
    return [
        tokens.issue("access", user=names[i % len(names)], role="ward_staff", sites=(site,), version=0).token
        for i in range(screens)
    ]


def _readings(
    registry: Registry, now: datetime, hours: int, rng: random.Random
) -> tuple[list[Row], list[Row]]:
    readings: list[Row] = []
    hourly: list[Row] = []
    start = now - timedelta(hours=hours)
    hour = now.replace(minute=0, second=0, microsecond=0)
    for s in registry.spec.sites:
        for gi, gw in enumerate(s.gateways):
            silent = SILENT if gi == len(s.gateways) - 1 else timedelta(0)
            for sensor in gw.sensors:
                step = timedelta(seconds=sensor.interval_s)
                for metric in sensor.metrics:
                    base = rng.uniform(10, 120)
                    t = now - silent - step * rng.random()
                    while t > start:
                        value = round(base + rng.gauss(0, base / 10), 2)
                        readings.append(
                            {"time": t, "site": s.id, "gateway": gw.id, "sensor": sensor.id, "metric": metric,
                             "value": value, "quality": "good"}
                        )  # fmt: skip
                        t -= step
                    n = max(1, 3600 // sensor.interval_s)
                    for k in range(hours):
                        value = round(base + rng.gauss(0, base / 10), 2)
                        hourly.append(
                            {"bucket": hour - timedelta(hours=k), "site": s.id, "sensor": sensor.id,
                             "metric": metric, "avg": value, "min": value, "max": value, "count": n,
                             "sum": value * n}
                        )  # fmt: skip
    return readings, hourly


def _batches(
    registry: Registry, now: datetime, hours: int, rng: random.Random
) -> tuple[list[Row], list[Row]]:
    batches: list[Row] = []
    dead: list[Row] = []
    first = now - timedelta(hours=hours)
    for s in registry.spec.sites:
        for gi, gw in enumerate(s.gateways):
            silent = SILENT if gi == len(s.gateways) - 1 else timedelta(0)
            for seq in range(1, hours * 3600 // BATCH_EVERY_S + 1):
                at = first + timedelta(seconds=seq * BATCH_EVERY_S)
                if rng.random() < 0.002 or now - at < silent:
                    continue  # a seq gap; the silent gateway
                outcome = "dead_letter" if rng.random() < 0.0005 else "stored"
                batches.append(
                    {"gateway": gw.id, "seq": seq, "site": s.id, "received_at": at, "readings": 20,
                     "outcome": outcome, "digest": secrets.token_bytes(16)}
                )  # fmt: skip
            dead.append(
                {"received_at": now - timedelta(minutes=rng.uniform(1, 600)),
                 "topic": f"smartward/v1/{s.id}/{gw.id}/telemetry", "gateway": gw.id, "site": s.id,
                 "reason": "schema", "detail": "bench dead letter", "payload": b"{}"}
            )  # fmt: skip
    return batches, dead


def _incidents(
    registry: Registry, now: datetime, days: int, rng: random.Random
) -> tuple[list[Row], list[Row], list[Row]]:
    incidents: list[Row] = []
    alerts: list[Row] = []
    events: list[Row] = []
    for s in registry.spec.sites:
        sensors = [(gw.id, x.id, x.metrics[0]) for gw in s.gateways for x in gw.sensors]
        total = days * INCIDENTS_PER_SITE_DAY
        for k in range(total):
            opened = now - timedelta(days=days - k / INCIDENTS_PER_SITE_DAY, seconds=rng.uniform(0, 3000))
            recent = k >= total - OPEN_PER_SITE
            state = rng.choice(("open", "acknowledged")) if recent else "resolved"
            acked = opened + timedelta(minutes=5) if state != "open" else None
            resolved = opened + timedelta(hours=2) if state == "resolved" else None
            severity, kind, iid = rng.choice(SEVERITIES), rng.choice(KINDS), f"inc-{s.id}-{k:05d}"
            incidents.append(
                {"id": iid, "site": s.id, "kind": kind, "severity": severity, "state": state,
                 "title_vi": f"Sự cố {kind}", "title_en": f"Incident {kind}", "opened_at": opened,
                 "updated_at": resolved or acked or opened, "acknowledged_at": acked, "resolved_at": resolved,
                 "assignee": None, "escalated_at": None}
            )  # fmt: skip
            cleared = resolved or (None if recent else opened + timedelta(hours=1))
            for a in range(3):
                gw_id, sensor_id, metric = rng.choice(sensors)
                alerts.append(
                    {"id": f"al-{s.id}-{k:05d}-{a}", "rule": f"{metric}_high", "site": s.id, "gateway": gw_id,
                     "sensor": sensor_id, "metric": metric, "severity": severity,
                     "state": "cleared" if cleared else "active", "opened_at": opened + timedelta(seconds=a),
                     "cleared_at": cleared, "incident_id": iid, "late": False, "value": rng.uniform(50, 200),
                     "detail": None, "category": "air", "message_vi": f"{metric} cao",
                     "message_en": f"high {metric}", "updated_at": cleared or opened + timedelta(seconds=a)}
                )  # fmt: skip
            steps: list[tuple[datetime, str, str, str | None]] = [(opened, f"rule:{kind}", "opened", None)]
            if acked is not None:
                steps.append((acked, "ward-staff", "acknowledged", None))
            if resolved is not None:
                steps.append((resolved, "ward-staff", "resolved", "đã xử lý"))
            events += [
                {
                    "incident_id": iid,
                    "site": s.id,
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "detail": detail,
                }
                for at, actor, action, detail in steps
            ]
    return incidents, alerts, events
