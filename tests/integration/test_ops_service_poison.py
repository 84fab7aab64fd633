"""Poison messages at the ops service (issue 10): a status with integers beyond 64 bits or
times outside Python's range, published retained by a gateway, made ``ops serve`` exit (on
both stores) and exit again after every restart. Now it is counted, logged, acknowledged, and
the service goes on — also after a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from ops_center.adapters.factory import open_repository
from ops_center.service.service import OpsService
from tests.integration.test_ops_service import T0, Rig, through
from tests.support.ops import GW, SITE, Publisher, batch, opened_rig

pytestmark = pytest.mark.integration

POISON: list[dict[str, Any]] = [
    {"last_seq": 18446744073709551616},
    {"dropped_through": 1e30},
    {"outbox_batches": 2**63},
    {"ts": "0001-01-01T00:00:00+00:01"},
    {"outbox_oldest": "0001-01-01T00:00:00+00:01"},
    {"ts": "9999-12-31T23:59:59-23:59"},
    {"agent": "a\u0000b"},
]


@pytest.fixture(params=["sqlite", "timescale"])
def rig(request: pytest.FixtureRequest, mosquitto: Any, tmp_path: Path) -> Iterator[Rig]:
    broker = mosquitto()
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp_path / 'ops.db'}"
    else:
        db_url = str(request.getfixturevalue("timescale_db"))
    with opened_rig(db_url, lambda repo: Rig(broker, db_url, repo)) as r:
        yield r


def _status(**over: Any) -> bytes:
    doc: dict[str, Any] = {"v": 1, "gateway": GW, "state": "online", "ts": datetime.now(UTC).isoformat(),
                           "last_seq": 1}
    doc.update(over)
    return json.dumps(doc).encode()


def _alive(svc: OpsService) -> None:
    assert svc.fatal is None, svc.fatal
    assert svc.ready


@pytest.mark.parametrize("over", POISON, ids=[f"{next(iter(o))}-{i}" for i, o in enumerate(POISON)])
def test_a_retained_poison_status_is_counted_and_the_service_goes_on(
        rig: Rig, gateway: Publisher, over: dict[str, Any]) -> None:
    svc = rig.service()
    gateway.send(topics.status(SITE, GW), _status(**over), retain=True)
    gateway.send(topics.telemetry(SITE, GW), batch(1, T0, 0.0))
    through(svc, 1)
    svc.wait_until(lambda p: p.counters.invalid >= 1 and p.pending_acks == 0, 10)
    _alive(svc)
    svc.stop()
    svc = rig.service()  # the retained poison comes again
    gateway.send(topics.telemetry(SITE, GW), batch(2, T0, 0.0))
    through(svc, 2)
    svc.wait_until(lambda p: p.counters.invalid >= 1, 10)
    _alive(svc)


@pytest.fixture
def sqlite_rig(mosquitto: Any, tmp_path: Path) -> Iterator[Rig]:
    repo = open_repository(f"sqlite:///{tmp_path / 'ops.db'}")
    repo.migrate()
    r = Rig(mosquitto(), f"sqlite:///{tmp_path / 'ops.db'}", repo)
    yield r
    for svc in r.services:
        svc.stop()
    repo.close()


def test_a_row_the_adapter_cannot_send_or_a_bug_costs_that_row_only(
        sqlite_rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Within the bounds, but a bug: the adapter raises something that is no RepositoryError for
    the status with last_seq 42, and the engine raises on an offline status (the containment is
    the same on every store: SQLite only)."""
    from tests.integration.test_ops_service import PATTERNS, RULES
    rig = sqlite_rig
    gateway = Publisher(rig.broker.url)
    repo = open_repository(rig.db_url)
    real = repo.incidents.commit_step

    def commit_step(part: Any) -> Any:
        if any(g.last_seq == 42 for g in part.gateways):
            raise ValueError("year 0 is out of range")
        return real(part)

    monkeypatch.setattr(repo.incidents, "commit_step", commit_step)
    svc = OpsService(rig.settings(), rig.registry, repo, rig.feed, rules=RULES, patterns=PATTERNS,
                     name="test-ops", client_id="test-ops")
    real_status = svc.engine.gateway_status

    def gateway_status(gw: str, state: Any, ts: datetime) -> Any:
        if state == "offline":
            raise RuntimeError("a bug in the engine")
        return real_status(gw, state, ts)

    monkeypatch.setattr(svc.engine, "gateway_status", gateway_status)
    svc.start()
    rig.services.append(svc)
    assert svc.link.subscribed.wait(20)
    gateway.send(topics.status(SITE, GW), _status(last_seq=42))
    gateway.send(topics.status(SITE, GW), _status(last_seq=43, state="offline"))
    gateway.send(topics.telemetry(SITE, GW), batch(1, T0, 0.0))
    through(svc, 1)
    p = svc.wait_until(lambda p: p.counters.failed >= 1 and p.pending_acks == 0, 10)
    _alive(svc)
    assert svc.writer.stats.refused >= 1
    assert p.counters.failed == 1
    gateway.close()


@pytest.mark.parametrize("when", ["9997-12-31T23:59:59-23:59", "1970-01-01T00:00:00+23:59"])
def test_times_at_the_edge_of_the_bounds_stop_nothing(sqlite_rig: Rig, when: str) -> None:
    """Inside the contract's bounds, far from now: a batch, a live status and a Last Will."""
    rig = sqlite_rig
    gateway = Publisher(rig.broker.url)
    try:
        svc = rig.service()
        doc = json.loads(batch(1, T0, 50.0))
        doc["sent_at"] = when
        for r in doc["readings"]:
            r["ts"] = when
        gateway.send(topics.telemetry(SITE, GW), json.dumps(doc).encode())
        gateway.send(topics.status(SITE, GW), _status(ts=when))
        gateway.send(topics.status(SITE, GW), _status(ts=when, state="offline"))
        gateway.send(topics.telemetry(SITE, GW), batch(2, T0, 0.0))
        svc.wait_until(lambda p: p.highest.get(GW, 0) >= 2 and p.queue_depth == 0, 20)
        ticks = svc.progress().counters.ticks
        svc.wait_until(lambda p: p.counters.ticks >= ticks + 3 and p.pending_acks == 0, 20)
        _alive(svc)
        svc.stop()
        svc = rig.service()
        gateway.send(topics.telemetry(SITE, GW), batch(3, T0, 0.0))
        svc.wait_until(lambda p: p.highest.get(GW, 0) >= 3, 20)
        _alive(svc)
    finally:
        gateway.close()
