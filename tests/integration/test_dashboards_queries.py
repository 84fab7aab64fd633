"""Every panel's SQL of every dashboard, with Grafana's macros and template variables
expanded (tests/grafana_sql.py), against a real TimescaleDB migrated by ``smartward db
migrate`` and filled by the simulated fleet, run as the database roles Grafana uses: a
ward's read-only role for the ward and cluster dashboards (row-level security scopes them),
a role mapped to every site for the city's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from contract import topics
from contract.codec import encode
from contract.models import TelemetryBatch
from contract.registry import load_registry
from dashboards.definitions import city, cluster, folders, ward
from dashboards.model import Dashboard, Panel, Query
from ingest.ports import ValidBatch
from ingest.stores.postgres import PostgresStore
from ops_center.adapters.postgres import PostgresOpsRepository
from ops_center.adapters.records import AlertRecord, IncidentRecord
from ops_center.domain.alerts import Severity
from ops_center.security.rls import grant_all_sites, grant_readonly
from simulators.fleet import fleet
from smartward.db_cli import migrate
from tests.grafana_sql import expand
from tests.servers.timescale import TimescaleServer

pytestmark = pytest.mark.integration

HOURS = 6
BATCH_S = 300
# Ranges that take each branch of a series: raw readings, readings_1m, readings_1h.
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


@dataclass
class Store:
    url: str
    now: datetime
    roles: dict[str, str]  # "thong-nhat" / "an-xa" / "city" -> connection URL


def _as(server: TimescaleServer, url: str, role: str, password: str) -> str:
    return f"postgresql://{role}:{quote(password)}@{server.host}:{server.port}/{url.rsplit('/', 1)[1]}"


def _fill(url: str, now: datetime) -> None:
    """HOURS of the simulated fleet, through the ingest's store (batches of BATCH_S per
    gateway, so ingest_batches is real), rollups refreshed; plus alerts and incidents."""
    reg = load_registry()
    start = now - timedelta(hours=HOURS)
    sims = fleet(reg, seed=7, start=start)
    store = PostgresStore(url)
    try:
        seqs = dict.fromkeys(sims, 0)
        t = start
        while t < now:
            t = min(t + timedelta(seconds=BATCH_S), now)
            batches = []
            for gw, sim in sims.items():
                readings = sim.advance(t)
                for i in range(0, len(readings), 5000):
                    seqs[gw] += 1
                    if gw == "tn-gw-01" and seqs[gw] == 7:
                        continue  # a lost batch: completeness below 100 %
                    b = TelemetryBatch(v=1, gateway=gw, seq=seqs[gw], sent_at=t,
                                       readings=readings[i:i + 5000])
                    site = reg.gateway_site[gw]
                    batches.append(ValidBatch(site, topics.telemetry(site, gw), t, b, encode(b)))
            store.write(batches, [])
        while store.refresh_rollups(max_rows=100_000):
            pass
    finally:
        store.close()
    with PostgresOpsRepository(url) as repo:
        cases: tuple[tuple[str, str, str, str, Severity], ...] = (
            ("thong-nhat", "tn-aq-01", "pm25", "pm25-24h-rolling", "warning"),
            ("thong-nhat", "tn-light-01", "lamp_power_w", "lamp-out", "warning"),
            ("quang-trung", "qt-flood-01", "water_level_cm", "flood-depth", "critical"),
            ("an-xa", "ax-gas-01", "gas_lel", "gas-lel", "emergency"),
            ("an-xa", "ax-ww-01", "ww_cod", "ww-qcvn40", "warning"),
        )
        for k, (site, sensor, metric, rule, severity) in enumerate(cases):
            opened = now - timedelta(hours=k + 1)
            inc = f"inc-{k}"
            repo.incidents.upsert_incident(IncidentRecord(
                id=inc, site=site, kind=rule.split("-")[0], severity=severity,
                state="acknowledged" if k == 0 else "open", title_vi=f"Sự cố {k}", title_en=f"Incident {k}",
                opened_at=opened, updated_at=opened))
            repo.incidents.upsert_alert(AlertRecord(
                id=f"al-{k}", rule=rule, site=site, severity=severity, state="active", opened_at=opened,
                updated_at=opened, sensor=sensor, metric=metric, incident_id=inc, value=1.0,
                category=rule.split("-")[0], message_vi=f"Cảnh báo {k}", message_en=f"Alert {k}"))


@pytest.fixture(scope="module")
def store(timescale: TimescaleServer) -> Iterator[Store]:
    timescale.ensure_running()
    url = timescale.fresh_db("dashboards")
    migrate(url, None)
    now = datetime.now(UTC).replace(microsecond=0)
    _fill(url, now)
    roles = {}
    for site in ("thong-nhat", "an-xa"):
        role, pw = grant_readonly(url, site)
        roles[site] = _as(timescale, url, role, pw)
    # The city leader's data source: `smartward db grant-readonly --all-sites`.
    role, pw = grant_all_sites(url)
    roles["city"] = _as(timescale, url, role, pw)
    yield Store(url, now, roles)


def run(url: str, query: Query | str, *, now: datetime, span: timedelta,
        variables: dict[str, str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    text = query.sql if isinstance(query, Query) else query
    with psycopg.connect(url) as conn:
        cur = conn.execute(expand(text, start=now - span, end=now, variables=variables).encode())
        assert cur.description is not None
        return [c.name for c in cur.description], cur.fetchall()


def check_panel(panel: Panel, url: str, store: Store, variables: dict[str, str]) -> None:
    for query in panel.queries:
        spans = RANGES if query.format == "time_series" else {"24h": RANGES["24h"]}
        for label, span in spans.items():
            cols, rows = run(url, query, now=store.now, span=span, variables=variables)
            where = f"{panel.title} [{label}]"
            assert tuple(cols) == query.columns, where
            assert rows, f"no rows: {where}"
            if query.format == "time_series":
                times = [r[0] for r in rows]
                assert all(isinstance(t, datetime) for t in times), where
                assert times == sorted(times), f"not sorted by time: {where}"
                assert all(store.now - span - timedelta(hours=1) <= t <= store.now for t in times), where
                assert all(isinstance(r[-1], float | int) for r in rows if r[-1] is not None), where


def dashboard_cases() -> list[tuple[str, Dashboard, str, str]]:
    return [
        *[(d.uid, d, "thong-nhat", "thong-nhat") for d in ward.dashboards()],
        *[(d.uid, d, "an-xa", "an-xa") for d in cluster.dashboards()],
        *[(d.uid, d, "city", "") for d in city.dashboards()],
    ]


def test_every_dashboard_is_covered_here() -> None:
    assert {uid for uid, *_ in dashboard_cases()} == {d.uid for f in folders() for d in f.dashboards}


@pytest.mark.parametrize(("uid", "dashboard", "role", "site"), dashboard_cases(), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_every_panel_query_returns_the_columns_it_expects(
    store: Store, uid: str, dashboard: Dashboard, role: str, site: str
) -> None:
    variables = {"site": site} if site else {}
    url = store.roles[role]
    for var in dashboard.variables:
        cols, rows = run(url, var.sql, now=store.now, span=RANGES["24h"], variables={})
        assert tuple(cols) == var.columns
        assert [r[0] for r in rows] == [site], "the variable offers the role's own sites only"
    for panel in dashboard.panels:
        check_panel(panel, url, store, variables)


def test_ward_role_sees_nothing_of_another_ward_through_any_panel(store: Store) -> None:
    url = store.roles["thong-nhat"]
    for dashboard in ward.dashboards():
        for panel in dashboard.panels:
            for query in panel.queries:
                for span in RANGES.values():
                    _, rows = run(url, query, now=store.now, span=span, variables={"site": "quang-trung"})
                    # Only aggregates over nothing (a count of 0) may answer.
                    assert all(v in (0, None) for r in rows for v in r), (panel.title, rows)
    # The owner does see quang-trung's data through the same queries: the filter is the role's.
    _, rows = run(store.url, ward.environment().panels[0].queries[0], now=store.now, span=RANGES["1h"],
                  variables={"site": "quang-trung"})
    assert rows and {r[1] for r in rows} <= {"qt-aq-01", "qt-aq-02"}


def test_city_role_sees_every_site_and_the_lost_batch(store: Store) -> None:
    url = store.roles["city"]
    completeness = next(p for p in city.overview().panels
                        if p.title.startswith("Độ đầy đủ dữ liệu theo cổng"))
    cols, rows = run(url, completeness.queries[0], now=store.now, span=RANGES["24h"], variables={})
    by_gw = {r[cols.index("gateway")]: r for r in rows}
    assert {r[0] for r in rows} == {"thong-nhat", "quang-trung", "an-xa"}
    pct = cols.index("completeness_pct")
    assert by_gw["tn-gw-01"][pct] < 100 and by_gw["qt-gw-01"][pct] == 100
    overview = next(p for p in city.overview().panels if p.type == "stat")
    _, rows = run(url, overview.queries[0], now=store.now, span=RANGES["24h"], variables={})
    assert rows == [(2, 3, 0)]  # (critical + emergency, warning, info) of the unresolved incidents


def test_regulatory_ratio_uses_each_monitors_column_and_factors(store: Store) -> None:
    """ax-ww-01 is column B with Kq 0.9, Kf 1.0: COD's Cmax is 150 x 0.9 = 135 mg/L."""
    panel = cluster.compliance().panels[0]
    _, ratio = run(store.roles["an-xa"], panel.queries[0], now=store.now, span=RANGES["1h"],
                   variables={"site": "an-xa"})
    q = ("SELECT $__timeGroup(time, $__interval) AS \"time\", 100 * avg(value) / 135 FROM readings "
         "WHERE $__timeFilter(time) AND sensor = 'ax-ww-01' AND metric = 'ww_cod' "
         "AND quality IN ('good', 'suspect') GROUP BY 1 ORDER BY 1")
    _, direct = run(store.url, q, now=store.now, span=RANGES["1h"], variables={})
    cod = [(r[0], r[2]) for r in ratio if r[1] == "ax-ww-01 ww_cod"]
    assert len(cod) == len(direct) > 0
    for (t1, v1), (t2, v2) in zip(cod, direct, strict=True):
        assert t1 == t2 and v1 == pytest.approx(v2)
