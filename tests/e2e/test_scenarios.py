"""Every shipped scenario through the REAL pipeline — Mosquitto with the shipped configuration,
edge agents with simulated sensors on one fast clock, the ingest, the ops service, SQLite or
TimescaleDB — scored from what the ops center STORED against the scenario's ground truth.

Targets (issue "[core 3/4]"): recall 1.0, precision ≥ 0.9, ≥ 5 alerts per incident where
alerts share a cause (a flood, a fire), detection within 2 reporting intervals of the onset
(early is fine: the flood pattern opens on rain and rising water before the street reaches
20 cm) for every kind, the stuck sensor included. And a crash of
the ops service mid-scenario: no duplicate, nothing missed.

The clock runs as fast as the pipeline takes it (the stack's governor); waits are deadlines.
Run with ``-s`` to see the evaluation tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.registry import load_registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.records import AlertRecord
from ops_center.api.render import render_data
from simulators.scenarios import ExpectedIncident, Scenario, get_scenario
from smartward.sim_eval import LOCAL, Evaluation, evaluate, format_evaluation, plan_scenario
from smartward.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REGISTRY = load_registry()
FAST = 20_000.0
FLUSH_S = 60.0
SHARED_CAUSE = ("flooding", "fire_risk")


def builder(name: str) -> Callable[[datetime], Scenario]:
    """The scenario from a PINNED local date and hour (``STARTS``): the same seed then gives
    the same readings on every run and every day.

    The simulated world is not invariant under a shift in time (the noise streams are seeded
    per sensor, but what they are added to is not): the PM climatology is interpolated by
    date, day-to-day factors (PM level, temperature, humidity) and each bin's collection time
    are hashed from the calendar day, sunrise and sunset follow the date. A start relative to
    "today" gave other data every day, and bin_full missed its window on ~2 % of days."""
    start = STARTS[name]
    return lambda _planned: get_scenario(name, start=start, registry=REGISTRY)


# Pinned starts (local time); flood-evening from 17:00 has its storm at 18:30 and lasts 9.5 h.
STARTS = {
    "normal-day": datetime(2026, 11, 24, 0, 0, tzinfo=LOCAL),
    "flood-evening": datetime(2026, 11, 24, 17, 0, tzinfo=LOCAL),
    "gas-leak": datetime(2026, 11, 25, 0, 0, tzinfo=LOCAL),
    "network-outage": datetime(2026, 11, 25, 0, 0, tzinfo=LOCAL),
    "mixed-week": datetime(2026, 11, 16, 0, 0, tzinfo=LOCAL),
}


@pytest.fixture(autouse=True)
def ingest_accepts_the_pinned_past(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingest refuses readings older than ``window_past_s`` (30 days) before the time it
    receives them (``time_window`` dead letters); a pinned date ages, so the window of these
    runs reaches back to the oldest pinned start (plus a day) and no further."""
    age_s = (datetime.now(LOCAL) - min(STARTS.values())).total_seconds()
    monkeypatch.setenv("SMARTWARD_WINDOW_PAST_S", str(max(30 * 86_400, int(age_s) + 86_400)))


def reporting_interval_s(e: ExpectedIncident) -> float:
    """The slowest reporting interval among the incident's sensors; a gateway-level incident
    is seen through its batches (one flush interval)."""
    return max((REGISTRY.sensors[s].spec.interval_s for s in e.sensors), default=FLUSH_S)


def check(ev: Evaluation) -> None:
    table = format_evaluation(ev)
    print("\n" + table)
    s = ev.score
    assert s.recall == 1.0, table
    assert s.precision >= 0.9, table
    assert ev.dead_letters == 0, table
    for d in s.detections:
        e = ev.scenario.expected[d.expected]
        allowed = 2 * reporting_interval_s(e)
        assert d.detect_s <= allowed, f"{e.kind} detected {d.detect_s:.0f} s after onset\n{table}"
    assert all(t.passed for t in ev.timing), table
    by_id = {i.id: i for i in ev.incidents}
    for d in s.detections:
        e = ev.scenario.expected[d.expected]
        if e.kind in SHARED_CAUSE:
            assert len(by_id[d.incident].alert_ids) >= 5, f"{e.kind}: alerts not compressed\n{table}"


def run(name: str, tmp_path: Path, broker: str, **kw: Any) -> Evaluation:
    build = builder(name)
    planned = build(datetime.now(LOCAL))
    # Over before the wall clock gets there: a simulated clock never runs ahead of it.
    assert planned.end + timedelta(seconds=2 * FLUSH_S + 60) < datetime.now(LOCAL), (
        f"the pinned start of {name} is not far enough in the past")
    return evaluate(build, registry=REGISTRY, speed=FAST, seed=1, broker=broker, flush_s=FLUSH_S,
                    workdir=tmp_path / "stack", timeout_s=240, **kw)


@pytest.mark.parametrize("name", ["normal-day", "flood-evening", "gas-leak", "network-outage"])
def test_scenario_scores_on_sqlite(name: str, mosquitto: Any, tmp_path: Path) -> None:
    ev = run(name, tmp_path, mosquitto().url)
    check(ev)
    if name in ("flood-evening", "gas-leak"):
        assert ev.score.alerts_per_incident >= 5
    if name == "normal-day":
        assert ev.score.produced == 0 and ev.alerts == 0


def test_mixed_week_scores_on_sqlite(mosquitto: Any, tmp_path: Path) -> None:
    ev = run("mixed-week", tmp_path, mosquitto().url)
    check(ev)
    assert ev.score.produced == 8


def test_flood_evening_scores_on_timescaledb(mosquitto: Any, timescale_db: str, tmp_path: Path) -> None:
    ev = run("flood-evening", tmp_path, mosquitto().url, db_url=timescale_db)
    assert ev.backend == "postgresql"
    check(ev)
    assert ev.score.alerts_per_incident >= 5


# --- a crash of the ops service mid-scenario ------------------------------------------------------


def alert_facts(db_url: str) -> set[tuple[Any, ...]]:
    """What a run decided, independent of the run: alert ids are deterministic in reading time."""
    repo = open_repository(db_url)
    try:
        alerts: list[AlertRecord] = repo.incidents.list_alerts(None, None, 10_000, 0).items
        incidents = repo.incidents.list_incidents(None, None, 1_000, 0).items
        timeline_dups = 0
        for i in incidents:
            detail = repo.incidents.get_incident(i.id)
            assert detail is not None
            keys = [(e.at, e.actor, e.action, e.detail) for e in detail.timeline]
            timeline_dups += len(keys) - len(set(keys))
    finally:
        repo.close()
    assert timeline_dups == 0, "a replayed change was written twice to an incident's timeline"
    facts: set[tuple[Any, ...]] = {("alert", a.id, a.rule, a.sensor or a.gateway, a.metric, a.severity,
                                    a.state, a.opened_at, a.cleared_at) for a in alerts}
    facts |= {("incident", i.id, i.kind, i.site, i.state, i.opened_at) for i in incidents}
    return facts


def test_ops_service_crash_mid_flood_loses_nothing_and_duplicates_nothing(
        mosquitto: Any, tmp_path: Path) -> None:
    sc = plan_scenario(builder("flood-evening"), tail_s=2 * FLUSH_S + 60)
    crash: dict[str, Any] = {}

    def crash_during_the_flood(obj: object) -> None:
        assert isinstance(obj, Stack)
        stack = obj
        assert stack.service is not None
        # Mid-incident, with evaluated but unacknowledged messages (the snapshot lacks them).
        p = stack.service.wait_until(lambda p: p.open_incidents >= 1 and p.pending_acks > 0, 120)
        crash["pending"] = p.pending_acks
        crash["feed"] = stack.feed
        stack.crash_ops()
        # The fleet goes on for half an hour of its time; the broker keeps it for the service.
        stack.wait_clock(stack.clock.now() + timedelta(minutes=30), 60)
        crash["restarted"] = stack.start_ops()

    db_crash = f"sqlite:///{tmp_path / 'crash.db'}"
    crashed = evaluate(lambda _start: sc, registry=REGISTRY, speed=8_000.0, seed=1,
                       broker=mosquitto().url, flush_s=FLUSH_S, db_url=db_crash, workdir=tmp_path / "a",
                       timeout_s=240, on_running=crash_during_the_flood)
    db_clean = f"sqlite:///{tmp_path / 'clean.db'}"
    clean = evaluate(lambda _start: sc, registry=REGISTRY, speed=FAST, seed=1, broker=mosquitto().url,
                     flush_s=FLUSH_S, db_url=db_clean, workdir=tmp_path / "b", timeout_s=240)
    check(crashed)
    assert crash["pending"] > 0
    restarted = crash["restarted"]
    assert restarted.progress().counters.messages > 0
    # The same alerts, incidents and timelines as a run without the crash: nothing re-raised,
    # nothing missed.
    assert alert_facts(db_crash) == alert_facts(db_clean)
    assert crashed.score.produced == clean.score.produced == 1
    # The live stream heard of each change once: the replay after the restart stayed off it.
    published = [(e.kind, json.dumps(render_data(e.data, REGISTRY), sort_keys=True))
                 for e in crash["feed"].recent()
                 if e.kind in ("alert", "incident")]
    twice = [p for p in set(published) if published.count(p) > 1]
    assert published and not twice, f"published twice: {twice}"
