"""The demo's first minute: its replay starts shortly before the scenario's first expected
incident, so one opens within the first minute (smartward/demo.py, ``replay_start``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contract.registry import load_registry
from simulators.scenarios import get_scenario
from smartward.demo import FIRST_INCIDENT_LEAD_S, replay_start


def test_the_replay_starts_just_before_the_first_incident() -> None:
    start = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    scenario = get_scenario("mixed-week", start=start, registry=load_registry())
    first = min(e.onset for e in scenario.expected)
    speed = 600.0
    clock = replay_start(start, [e.onset for e in scenario.expected], speed)
    assert clock > start
    # At `speed`, the replay reaches the first incident's onset after FIRST_INCIDENT_LEAD_S real seconds.
    assert (first - clock).total_seconds() / speed <= FIRST_INCIDENT_LEAD_S + 1
    assert FIRST_INCIDENT_LEAD_S + 30 <= 60  # room for the rules' raise delays at ×600


def test_the_replay_never_starts_before_the_scenario() -> None:
    start = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    early = start + timedelta(minutes=1)
    assert replay_start(start, [early], 600.0) == start
    assert replay_start(start, [], 600.0) == start
