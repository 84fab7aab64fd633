"""The ops service against a real Mosquitto (the shipped configuration) and SQLite: its own
subscription, rules on reading time, alerts and incidents stored and on the feed, QoS 1
redelivery as a no-op, restart without re-raising, crash replay without duplicates, people's
actions through the incident manager, and the Last Will placed in the gateway's time."""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from contract import topics
from contract.codec import encode
from contract.models import Status
from contract.registry import Registry, load_registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.ports import IncidentRepository
from ops_center.adapters.repository import OpsRepository
from ops_center.api.render import render_data
from ops_center.feed import Feed
from ops_center.rulebook.loader import load_patterns, load_rules
from ops_center.service.actions import HumanAction, mutation
from ops_center.service.service import OpsService
from ops_center.service.settings import OpsServiceSettings
from tests.servers.mosquitto import MosquittoServer
from tests.support.ops import GW, SITE, Publisher, batch, opened_rig

pytestmark = pytest.mark.integration

REGISTRY = load_registry()
RULES = load_rules(registry=REGISTRY)
PATTERNS = load_patterns()
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(second=0, microsecond=0)
WAIT_S = 20.0


@dataclass
class Rig:
    broker: MosquittoServer
    db_url: str
    repo: OpsRepository
    feed: Feed = field(default_factory=Feed)
    registry: Registry = REGISTRY
    services: list[OpsService] = field(default_factory=list)

    def settings(self, **kw: Any) -> OpsServiceSettings:
        base: dict[str, Any] = {"mqtt_url": self.broker.url, "db_url": self.db_url,
                                "ops_tick_interval_s": 0.2, "ops_snapshot_interval_s": 0.5,
                                "ops_session_expiry_s": 600}
        base.update(kw)
        return OpsServiceSettings(**base)

    def service(self, **kw: Any) -> OpsService:
        repo = open_repository(self.db_url)
        svc = OpsService(self.settings(**kw), self.registry, repo, self.feed, rules=RULES,
                         patterns=PATTERNS, name="test-ops", client_id="test-ops")
        svc.start()
        self.services.append(svc)
        assert svc.link.subscribed.wait(WAIT_S), "ops service not subscribed"
        return svc

@pytest.fixture
def rig(mosquitto: Any, tmp_path: Path) -> Iterator[Rig]:
    db_url = f"sqlite:///{tmp_path / 'ops.db'}"
    with opened_rig(db_url, lambda repo: Rig(mosquitto(), db_url, repo)) as r:
        yield r


def through(svc: OpsService, seq: int, gw: str = GW) -> None:
    svc.wait_until(lambda p: p.through.get(gw, 0) >= seq and p.queue_depth == 0, WAIT_S)


def gas_alerts(repo: OpsRepository) -> list[Any]:
    return [a for a in repo.incidents.list_alerts(None, None, 100, 0).items if a.rule == "gas-lel"]


def test_threshold_crossing_is_stored_as_alert_and_incident_and_published_on_the_feed(
        rig: Rig, gateway: Publisher) -> None:
    svc = rig.service()
    telemetry = topics.telemetry(SITE, GW)
    for k, lel in enumerate([0.0, 0.0, 35.0, 36.0], start=1):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), lel))
    through(svc, 4)

    alerts = gas_alerts(rig.repo)
    assert len(alerts) == 1
    a = alerts[0]
    # Reading time, not wall time: the alert opened at the reading that crossed 20 %LEL.
    assert a.state == "active" and a.severity == "critical" and a.opened_at == T0 + timedelta(seconds=30)
    incidents = rig.repo.incidents.list_incidents(None, None, 10, 0).items
    assert [(i.kind, i.site, i.state) for i in incidents] == [("gas_leak", SITE, "open")]
    assert a.incident_id == incidents[0].id
    kinds = [e.kind for e in rig.feed.recent()]
    assert "alert" in kinds and "incident" in kinds
    detail = rig.repo.incidents.get_incident(incidents[0].id)
    assert detail is not None and [e.action for e in detail.timeline][:1] == ["opened"]


def test_a_redelivered_batch_is_a_no_op(rig: Rig, gateway: Publisher) -> None:
    svc = rig.service()
    telemetry = topics.telemetry(SITE, GW)
    first = batch(1, T0, 30.0)
    gateway.send(telemetry, first)
    gateway.send(telemetry, batch(2, T0 + timedelta(seconds=10), 30.0))
    gateway.send(telemetry, first)  # QoS 1 redelivery: same seq, same bytes
    gateway.send(telemetry, batch(3, T0 + timedelta(seconds=20), 30.0))
    through(svc, 3)
    p = svc.progress()
    assert p.counters.duplicates == 1 and p.counters.telemetry == 4
    assert len(gas_alerts(rig.repo)) == 1


def test_a_restarted_service_keeps_its_rule_state_and_does_not_reraise(rig: Rig, gateway: Publisher) -> None:
    telemetry = topics.telemetry(SITE, GW)
    svc = rig.service()
    for k in range(1, 4):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 30.0))
    through(svc, 3)
    svc.stop()  # graceful: final snapshot, everything acknowledged
    rig.services.remove(svc)
    opened = gas_alerts(rig.repo)
    assert len(opened) == 1

    again = rig.service()
    again.wait_until(lambda p: p.restored, WAIT_S)
    assert again.progress().open_incidents == 1
    for k in range(4, 8):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 31.0))
    # Gas gone for more than the rule's clear hold (120 s of reading time).
    for k in range(8, 24):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 0.0))
    through(again, 23)
    alerts = gas_alerts(rig.repo)
    assert [a.id for a in alerts] == [opened[0].id]  # the same alert, not a second one
    assert alerts[0].state == "cleared"
    assert len(rig.repo.incidents.list_incidents(None, None, 10, 0).items) == 1


def test_a_crash_replays_what_the_snapshot_lacks_without_duplicates(rig: Rig, gateway: Publisher) -> None:
    telemetry = topics.telemetry(SITE, GW)
    # Snapshots only at stop: everything after the first one is unacknowledged at the crash.
    svc = rig.service(ops_snapshot_interval_s=3600, ops_snapshot_max_pending=900)
    gateway.send(telemetry, batch(1, T0, 0.0))
    through(svc, 1)
    svc.wait_until(lambda p: p.counters.snapshots == 0, WAIT_S)
    for k in range(2, 6):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 45.0))
    through(svc, 5)
    assert svc.progress().pending_acks == 5
    before = gas_alerts(rig.repo)
    assert len(before) == 1 and before[0].severity == "emergency"
    svc.abort()  # a crash: no snapshot, nothing acknowledged
    rig.services.remove(svc)
    # While it is down, the gateway goes on; the broker keeps it for the service's session.
    for k in range(6, 24):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 0.0))

    again = rig.service()
    through(again, 23)
    p = again.progress()
    assert p.counters.telemetry >= 23  # the 5 unacknowledged batches came back, then the rest
    alerts = gas_alerts(rig.repo)
    assert [a.id for a in alerts] == [before[0].id] and alerts[0].state == "cleared"
    incidents = rig.repo.incidents.list_incidents(None, None, 10, 0).items
    assert len(incidents) == 1
    detail = rig.repo.incidents.get_incident(incidents[0].id)
    assert detail is not None
    keys = [(e.at, e.actor, e.action, e.detail) for e in detail.timeline]
    assert len(keys) == len(set(keys)), "a replayed change was written twice to the timeline"


def test_a_persons_acknowledgement_goes_through_the_incident_manager(rig: Rig, gateway: Publisher) -> None:
    telemetry = topics.telemetry(SITE, GW)
    svc = rig.service()
    gateway.send(telemetry, batch(1, T0, 25.0))
    through(svc, 1)
    incident = rig.repo.incidents.list_incidents(None, None, 10, 0).items[0]
    act = HumanAction(incident_id=incident.id, action="acknowledge", by="tran.van.b", at=datetime.now(UTC),
                      note="Đã cử đội kiểm tra")
    stored = rig.repo.incidents.apply_incident_action(incident.id, mutation(act))  # what the API route does
    assert stored is not None
    svc.on_action(act, stored)  # ... and then tells the service
    assert svc.manager.get(incident.id).state == "acknowledged"
    # A later machine change (escalation to emergency) keeps the person's state.
    gateway.send(telemetry, batch(2, T0 + timedelta(seconds=10), 60.0))
    through(svc, 2)
    row = rig.repo.incidents.get_incident(incident.id)
    assert row is not None
    assert row.incident.state == "acknowledged" and row.incident.severity == "emergency"


def test_a_resolve_overtaken_by_a_recurrence_ends_with_store_and_rule_state_equal(
        rig: Rig, gateway: Publisher) -> None:
    """A person resolves; before the service hears of it, the next reading worsens the alert and
    the service's write reopens the incident in the store (the recurrence rule). The service
    used to apply the resolve to its rule state anyway: it then held the incident resolved (no
    escalation, no recurrence) while the store showed it open. It now adopts what the store
    holds (ops_center/domain/lifecycle.py, docs/design.md)."""
    telemetry = topics.telemetry(SITE, GW)
    svc = rig.service()
    gateway.send(telemetry, batch(1, T0, 25.0))
    through(svc, 1)
    incident = rig.repo.incidents.list_incidents(None, None, 10, 0).items[0]
    act = HumanAction(incident_id=incident.id, action="resolve", by="tran.van.b", at=datetime.now(UTC),
                      note="Đã khóa van")
    stored = rig.repo.incidents.apply_incident_action(incident.id, mutation(act))
    assert stored is not None and stored.state == "resolved"
    gateway.send(telemetry, batch(2, T0 + timedelta(seconds=10), 60.0))  # worse, before the hook
    through(svc, 2)
    svc.on_action(act, stored)
    row = rig.repo.incidents.get_incident(incident.id)
    assert row is not None and row.incident.state == "open"
    memory = svc.manager.get(incident.id)
    assert memory.state == row.incident.state
    assert memory.resolved_at is None and row.incident.resolved_at is None
    svc.wait_until(lambda p: p.counters.actions == 1, WAIT_S)
    assert any(e.action == "resolved" and e.by == "tran.van.b" for e in memory.timeline)


def test_what_people_did_while_the_service_was_away_is_adopted_at_its_start(
        rig: Rig, gateway: Publisher) -> None:
    telemetry = topics.telemetry(SITE, GW)
    svc = rig.service()
    gateway.send(telemetry, batch(1, T0, 25.0))
    through(svc, 1)
    svc.stop()
    rig.services.remove(svc)
    incident = rig.repo.incidents.list_incidents(None, None, 10, 0).items[0]
    act = HumanAction(incident_id=incident.id, action="acknowledge", by="tran.van.b", at=datetime.now(UTC))
    stored = rig.repo.incidents.apply_incident_action(incident.id, mutation(act))  # the API, service away
    assert stored is not None
    again = rig.service()
    again.wait_until(lambda p: p.restored, WAIT_S)
    memory = again.manager.get(incident.id)
    assert memory.state == stored.state == "acknowledged" and memory.acknowledged_by == "api"


class HeldIncidents:
    """The service's incidents port, its commit of an incident's resolution held at a gate: the
    worker stops mid-flush with the resolution decided in memory, not yet in the store."""

    def __init__(self, incidents: IncidentRepository) -> None:
        self.incidents = incidents
        self.gate = threading.Event()
        self.holding = threading.Event()

    def commit_step(self, step: Any) -> Any:
        if any(i.state == "resolved" for i in step.incidents) and not self.gate.is_set():
            self.holding.set()
            assert self.gate.wait(WAIT_S)
        return self.incidents.commit_step(step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.incidents, name)


class HeldRepo:
    """The service's repository with its incidents port held (``HeldIncidents``)."""

    def __init__(self, repo: OpsRepository) -> None:
        self.repo = repo
        self.incidents = HeldIncidents(repo.incidents)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)


def test_an_acknowledgement_racing_an_auto_resolve_ends_with_store_and_rule_state_equal(
        rig: Rig, gateway: Publisher) -> None:
    """The manager has auto-resolved the incident (every alert clear for the hold) but the step
    is not committed yet when a person acknowledges it in the store. The service's resolution
    lands after (the store keeps the further state), and the service then adopts the stored
    row: both say resolved."""
    telemetry = topics.telemetry(SITE, GW)
    fast = PATTERNS.model_copy(update={"settings": PATTERNS.settings.model_copy(
        update={"auto_resolve_hold_s": 0.5})})
    held = HeldRepo(open_repository(rig.db_url))
    svc = OpsService(rig.settings(), REGISTRY, cast(OpsRepository, held), rig.feed, rules=RULES,
                     patterns=fast, name="test-ops", client_id="test-ops")
    svc.start()
    rig.services.append(svc)
    assert svc.link.subscribed.wait(WAIT_S)
    gateway.send(telemetry, batch(1, T0, 25.0))
    for k in range(2, 20):  # clear (the rule clears after 120 s below): the hold starts
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 0.0))
    assert held.incidents.holding.wait(WAIT_S), "the auto-resolve was not decided"
    incident = rig.repo.incidents.list_incidents(None, None, 10, 0).items[0]
    assert incident.state == "open"  # not committed yet
    act = HumanAction(incident_id=incident.id, action="acknowledge", by="tran.van.b", at=datetime.now(UTC))
    stored = rig.repo.incidents.apply_incident_action(incident.id, mutation(act))
    assert stored is not None and stored.state == "acknowledged"
    told = threading.Thread(target=svc.on_action, args=(act, stored))
    told.start()
    held.incidents.gate.set()
    told.join(WAIT_S)
    svc.wait_until(lambda p: p.counters.actions == 1 and p.queue_depth == 0, WAIT_S)
    row = rig.repo.incidents.get_incident(incident.id)
    assert row is not None and row.incident.state == "resolved"
    assert svc.manager.get(incident.id).state == row.incident.state
    assert {"acknowledged", "resolved"} <= {e.action for e in row.timeline}


@pytest.mark.parametrize("heartbeat_after_s", [None, 20.0])
def test_the_last_will_is_placed_after_the_gateways_last_batch_or_status(
        rig: Rig, gateway: Publisher, heartbeat_after_s: float | None) -> None:
    """The Will carries the time its gateway connected; it is placed after the last thing the
    gateway sent. With ``heartbeat_after_s``, a fleet on a fast clock: the periodic online
    status, sent a moment of wall time after the last batch, is already 20 s later in the
    gateway's time, and the Will must not be placed before it (it then looked older than the
    status and was dropped: mixed-week once missed its area outage so)."""
    svc = rig.service()
    telemetry, status = topics.telemetry(SITE, GW), topics.status(SITE, GW)
    connected_at = T0 - timedelta(hours=3)
    gateway.send(status, encode(Status(v=1, gateway=GW, state="online", ts=connected_at)), retain=True)
    for k in range(1, 4):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 0.0))
    through(svc, 3)
    last_sent = T0 + timedelta(seconds=31)
    statuses = 2
    if heartbeat_after_s is not None:
        last_sent += timedelta(seconds=heartbeat_after_s)
        gateway.send(status, encode(Status(v=1, gateway=GW, state="online", ts=last_sent)), retain=True)
        statuses += 1
    # The Will was written when the gateway connected, three hours of its time earlier.
    gateway.send(status, encode(Status(v=1, gateway=GW, state="offline", ts=connected_at)), retain=True)
    svc.wait_until(lambda p: p.counters.statuses >= statuses and p.queue_depth == 0, WAIT_S)
    svc.wait_until(lambda p: p.open_incidents >= 1, WAIT_S)
    alerts = rig.repo.incidents.list_alerts(None, None, 100, 0).items
    offline = [a for a in alerts if a.rule == "gateway-offline"]
    assert len(offline) == 1
    assert last_sent <= offline[0].opened_at < last_sent + timedelta(seconds=WAIT_S)
    gws = {g.gateway: g for g in rig.repo.gateways.list_gateway_status(None)}
    assert gws[GW].state == "offline"


def test_actions_wait_for_the_worker_and_survive_concurrent_traffic(rig: Rig, gateway: Publisher) -> None:
    telemetry = topics.telemetry(SITE, GW)
    svc = rig.service()
    gateway.send(telemetry, batch(1, T0, 25.0))
    through(svc, 1)
    incident = rig.repo.incidents.list_incidents(None, None, 10, 0).items[0]
    done = threading.Event()

    def traffic() -> None:
        for k in range(2, 60):
            gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 26.0))
        done.set()

    t = threading.Thread(target=traffic)
    t.start()
    act = HumanAction(incident_id=incident.id, action="note", by="tran.van.b", at=datetime.now(UTC),
                      note="Kiểm tra van")
    svc.on_action(act, incident)
    t.join(30)
    assert done.is_set()
    through(svc, 59)
    assert svc.progress().counters.actions == 1
    timeline = svc.manager.get(incident.id).timeline
    assert any(e.action == "annotated" and e.by == "tran.van.b" for e in timeline)


def feed_changes(feed: Feed) -> list[tuple[str, str, str, str]]:
    """Each alert / incident event of the feed as (kind, id, action, the entity's JSON): a
    change published twice shows up twice."""
    out: list[tuple[str, str, str, str]] = []
    for e in feed.recent():
        if e.kind in ("alert", "incident"):
            entity: Any = render_data(e.data, REGISTRY)[e.kind]  # as the stream shows it
            out.append((e.kind, entity["id"], str(e.data["action"]), json.dumps(entity, sort_keys=True)))
    return out


def test_changes_replayed_after_a_crash_are_not_published_on_the_feed_again(
        rig: Rig, gateway: Publisher) -> None:
    telemetry = topics.telemetry(SITE, GW)
    svc = rig.service(ops_snapshot_interval_s=3600, ops_snapshot_max_pending=900)
    gateway.send(telemetry, batch(1, T0, 0.0))
    for k in range(2, 6):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 45.0))
    through(svc, 5)
    assert svc.progress().pending_acks == 5  # none of it in a snapshot: all of it comes back
    published = feed_changes(rig.feed)
    assert {c[0] for c in published} == {"alert", "incident"}
    svc.abort()
    rig.services.remove(svc)
    for k in range(6, 24):
        gateway.send(telemetry, batch(k, T0 + timedelta(seconds=10 * k), 0.0))

    again = rig.service()
    through(again, 23)
    assert again.progress().counters.telemetry >= 23  # batches 1-5 were evaluated a second time
    changes = feed_changes(rig.feed)
    duplicated = {c: n for c, n in collections.Counter(changes).items() if n > 1}
    assert not duplicated, f"published twice: {duplicated}"
    assert again.writer.stats.feed_replays_suppressed >= len(published)
    assert changes[: len(published)] == published
    # What happened after the crash is on the feed once: the gas alert cleared.
    alert_id = gas_alerts(rig.repo)[0].id
    actions = [(c[2], json.loads(c[3])["state"]) for c in changes if c[0] == "alert" and c[1] == alert_id]
    assert actions[0] == ("raised", "active") and actions[-1][1] == "cleared"
    assert sum(1 for a in actions if a[1] == "cleared") == 1


def test_a_window_set_through_the_api_suppresses_a_reading_and_ending_it_lets_the_next_raise(
        rig: Rig, gateway: Publisher) -> None:
    from fastapi.testclient import TestClient

    from ops_center.api.app import create_app
    from ops_center.security.passwords import Passwords
    from ops_center.security.users import add_user
    from ops_center.settings import OpsSettings

    svc = rig.service(ops_maintenance_refresh_s=3600)  # only the API's feed event can tell it
    passwords = Passwords(__import__("argon2").PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    add_user(rig.repo.users, passwords, rig.registry, name="ax-manager", role="cluster_manager",
             sites=["an-xa"], password="correct-horse-battery", actor="test")
    settings = OpsSettings(environment="production", secret_key="test-secret-key-0123456789-abcdefghijklmnop")
    app = create_app(settings, rig.repo, rig.feed, registry=rig.registry, passwords=passwords)
    telemetry = topics.telemetry(SITE, GW)
    now = datetime.now(UTC).replace(microsecond=0)
    with TestClient(app) as client:
        token = client.post("/api/v1/auth/token",
                            data={"username": "ax-manager", "password": "correct-horse-battery"}).json()
        h = {"Authorization": f"Bearer {token['access_token']}"}
        r = client.post("/api/v1/maintenance", headers=h, json={
            "scope": "sensor", "target": "ax-gas-01", "start": (now - timedelta(minutes=5)).isoformat(),
            "reason": "Hiệu chuẩn đầu dò khí / gas detector calibration"})
        assert r.status_code == 201, r.text
        window = r.json()
        assert window["set_by"] == "ax-manager" and window["active"] is True
        gateway.send(telemetry, batch(1, now - timedelta(seconds=30), 45.0))
        through(svc, 1)
        assert gas_alerts(rig.repo) == [] and rig.repo.incidents.list_incidents(None, None, 10, 0).items == []

        r = client.delete(f"/api/v1/maintenance/{window['id']}", headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["active"] is False
        gateway.send(telemetry, batch(2, datetime.now(UTC) + timedelta(seconds=1), 45.0))
        through(svc, 2)
        assert [a.state for a in gas_alerts(rig.repo)] == ["active"]
        assert [i.kind for i in rig.repo.incidents.list_incidents(None, None, 10, 0).items] == ["gas_leak"]
    kinds = [e.kind for e in rig.feed.recent()]
    assert kinds.count("maintenance") == 2
