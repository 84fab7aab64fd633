"""Notifications end to end on real servers: readings through Mosquitto into the ops service,
incidents and their outbox rows in SQLite (one transaction), email through a real SMTP server
(aiosmtpd). Exactly one email to the first tier; escalation after the configured delay;
acknowledgement stops it; an SMTP outage is retried until every message is delivered, once;
a burst for one contact is folded into a digest within the rate limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from contract.registry import load_registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.records import IncidentRecord, NotificationRecord
from ops_center.adapters.repository import OpsRepository, StepWrite
from ops_center.adapters.sql import SqlOpsRepository
from ops_center.adapters.sql_notifications import SqlNotificationStore
from ops_center.domain.incidents import Incident, IncidentChange, TimelineEntry
from ops_center.feed import Feed
from ops_center.rulebook.loader import load_patterns, load_rules
from ops_center.service.actions import HumanAction, mutation
from ops_center.service.service import OpsService
from ops_center.service.settings import OpsServiceSettings
from tests.servers.smtp import SmtpServer
from tests.support.ops import Publisher, batch, opened_rig
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

REGISTRY = load_registry()
RULES = load_rules(registry=REGISTRY)
PATTERNS = load_patterns()
GW, SITE = "ax-gw-02", "an-xa"
WAIT_S = 30.0
DUTY, LEADER = "trucban.anxa@example.vn", "lanhdao.anxa@example.vn"


def policy_text(escalate_after_min: float, *, max_messages: int = 5) -> str:
    return f"""\
version: 1
rate_limit: {{max_messages: {max_messages}, window_min: 10}}
contacts:
  - id: ax-truc-ban
    name: "Trực ban CCN An Xá"
    email: {DUTY}
    sites: [an-xa]
  - id: ax-lanh-dao
    name: "Lãnh đạo CCN An Xá"
    email: {LEADER}
    sites: [an-xa]
policies:
  - id: ax-serious
    sites: [an-xa]
    min_severity: critical
    channels: [email]
    notify: [ax-truc-ban]
    escalate:
      - after_min: {escalate_after_min}
        notify: [ax-lanh-dao]
"""


@dataclass
class Rig:
    broker: Any
    smtp: SmtpServer
    db_url: str
    repo: OpsRepository
    tmp: Path
    feed: Feed = field(default_factory=Feed)
    services: list[OpsService] = field(default_factory=list)

    def service(self, escalate_after_min: float = 60.0, **kw: Any) -> OpsService:
        policy = self.tmp / "policy.yaml"
        policy.write_text(policy_text(escalate_after_min, **kw), "utf-8")
        settings = OpsServiceSettings(
            mqtt_url=self.broker.url,
            db_url=self.db_url,
            ops_tick_interval_s=0.2,
            ops_snapshot_interval_s=0.5,
            ops_session_expiry_s=600,
            notify_policy=policy,
            smtp_url=self.smtp.url,
            smtp_from="Smartward <ioc@example.vn>",
            public_url="https://ioc.example.vn",
            secret_key="s" * 40,
            notify_poll_s=0.2,
            notify_retry_initial_s=0.2,
            notify_retry_max_s=1.0,
        )
        svc = OpsService(
            settings,
            REGISTRY,
            open_repository(self.db_url),
            self.feed,
            rules=RULES,
            patterns=PATTERNS,
            name="test-ops",
            client_id="test-ops-notify",
        )
        svc.start()
        self.services.append(svc)
        assert svc.link.subscribed.wait(WAIT_S), "ops service not subscribed"
        return svc

    @property
    def store(self) -> SqlNotificationStore:
        assert isinstance(self.repo, SqlOpsRepository)
        return SqlNotificationStore(self.repo)

@pytest.fixture
def rig(mosquitto: Any, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Rig]:
    db_url = f"sqlite:///{tmp_path / 'ops.db'}"
    with opened_rig(db_url, lambda repo: Rig(mosquitto(), smtp_server, db_url, repo, tmp_path)) as r:
        yield r


def wait(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    wait_until(condition, timeout_s=timeout_s, what=what)


def idle(svc: OpsService, rig: Rig) -> None:
    """Nothing pending, and the sender has looked again at least twice since (so anything it
    would still create or send, it would have)."""
    assert svc.notifier is not None
    wait(lambda: rig.store.counts()["pending"] == 0, "outbox drained")
    seen = svc.notifier.sender.stats.cycles
    wait(lambda: svc.notifier is not None and svc.notifier.sender.stats.cycles >= seen + 2, "two more cycles")


def gas_leak(svc: OpsService, gateway: Publisher, seq: int = 1) -> str:
    """A critical gas reading now: one gas_leak incident at An Xá; its id."""
    gateway.send(topics.telemetry(SITE, GW), batch(seq, datetime.now(UTC) - timedelta(seconds=5), 25.0))
    svc.wait_until(lambda p: p.through.get(GW, 0) >= seq and p.queue_depth == 0, WAIT_S)
    incidents = svc.repo.incidents.list_incidents(None, "open", 10, 0).items
    assert [i.kind for i in incidents] == ["gas_leak"]
    return incidents[0].id


def test_an_incident_from_readings_sends_exactly_one_email_to_the_first_tier(
    rig: Rig, gateway: Publisher
) -> None:
    svc = rig.service()
    incident_id = gas_leak(svc, gateway)
    rig.smtp.wait_for(lambda ms: len(ms) >= 1, WAIT_S, "the first email")
    idle(svc, rig)
    mails = rig.smtp.messages()
    assert len(mails) == 1
    m = mails[0]
    assert DUTY in str(m["To"]) and "Trực ban CCN An Xá" in str(m["To"])
    # The Vietnamese subject is RFC 2047-encoded on the wire and decodes intact.
    assert str(m["Subject"]).startswith("[Nghiêm trọng/Critical] Sự cố mới: ")
    body = m.get_content()
    first = body.split("\n")[0]
    # Places by the registry's names, not slugs: the site, and the factory / sensor (the gateway).
    assert "Cụm công nghiệp An Xá" in first and "Nhà máy dệt nhuộm số 1" in first
    assert "an-xa" not in first and "ax-gas-01" not in first and "det-nhuom-1" not in first
    assert f"https://ioc.example.vn/screen/?incident={incident_id}" in body
    assert "https://ioc.example.vn/api/v1/ack/" in body
    rows = rig.store.list(None, incident_id, 10, 0).items
    assert [(r.contact, r.channel, r.reason, r.state, r.attempts) for r in rows] == [
        ("ax-truc-ban", "email", "opened", "sent", 1)
    ]
    detail = rig.repo.incidents.get_incident(incident_id)
    assert detail is not None
    notified = [(e.actor, e.action, e.detail) for e in detail.timeline if e.action == "notified"]
    assert notified == [("notify:email", "notified", "ax-truc-ban (opened)")]


def test_no_acknowledgement_escalates_to_the_second_tier_after_the_delay(
    rig: Rig, gateway: Publisher
) -> None:
    svc = rig.service(escalate_after_min=0.05)  # 3 s
    t0 = datetime.now(UTC)
    incident_id = gas_leak(svc, gateway)
    rig.smtp.wait_for(lambda ms: bool([m for m in ms if LEADER in str(m["To"])]), WAIT_S, "the escalation")
    assert datetime.now(UTC) - t0 >= timedelta(seconds=3)
    idle(svc, rig)
    assert len(rig.smtp.to(DUTY)) == 1 and len(rig.smtp.to(LEADER)) == 1
    assert "Chưa ai tiếp nhận" in str(rig.smtp.to(LEADER)[0]["Subject"])
    rows = {(r.contact, r.reason, r.step) for r in rig.store.list(None, incident_id, 10, 0).items}
    assert rows == {("ax-truc-ban", "opened", 0), ("ax-lanh-dao", "escalated", 1)}


def test_acknowledgement_stops_escalation(rig: Rig, gateway: Publisher) -> None:
    svc = rig.service(escalate_after_min=0.1)  # 6 s
    incident_id = gas_leak(svc, gateway)
    rig.smtp.wait_for(lambda ms: len(ms) >= 1, WAIT_S, "the first email")
    act = HumanAction(incident_id=incident_id, action="acknowledge", by="tran.van.b", at=datetime.now(UTC))
    stored = rig.repo.incidents.apply_incident_action(incident_id, mutation(act))  # what the API route does
    assert stored is not None
    svc.on_action(act, stored)
    rows = rig.store.list(None, incident_id, 10, 0).items
    deadline = rows[0].created_at + timedelta(minutes=0.1)
    wait(lambda: datetime.now(UTC) > deadline + timedelta(seconds=1), "past the escalation deadline")
    idle(svc, rig)
    assert len(rig.smtp.messages()) == 1
    assert [r.reason for r in rig.store.list(None, incident_id, 10, 0).items] == ["opened"]


def test_an_smtp_outage_is_retried_until_delivered_once(rig: Rig, gateway: Publisher) -> None:
    rig.smtp.stop()
    svc = rig.service()
    incident_id = gas_leak(svc, gateway)
    wait(
        lambda: any(r.attempts >= 2 for r in rig.store.list(None, incident_id, 10, 0).items),
        "failed attempts",
    )
    row = rig.store.list(None, incident_id, 10, 0).items[0]
    assert row.state == "pending" and row.error and "SMTP" in row.error
    rig.smtp.start()
    rig.smtp.wait_for(lambda ms: len(ms) >= 1, WAIT_S, "delivery after the outage")
    idle(svc, rig)
    assert len(rig.smtp.messages()) == 1
    assert rig.store.list(None, incident_id, 10, 0).items[0].state == "sent"


def test_a_burst_for_one_contact_is_folded_into_a_digest_within_the_rate_limit(rig: Rig) -> None:
    """500 incidents opened in one evaluation step (as the service's ChangeWriter commits them:
    the planner's rows in the step's transaction) for one contact limited to 5 messages."""
    svc = rig.service(max_messages=5)
    assert svc.notifier is not None
    now = datetime.now(UTC)
    changes = []
    for k in range(500):
        inc = Incident(
            id=f"burst-{k:03d}",
            site=SITE,
            kind="gas_leak",
            severity="critical",
            state="open",
            title_vi=f"Rò rỉ khí cháy {k}",
            title_en=f"Gas leak {k}",
            opened_at=now,
            acknowledged_at=None,
            resolved_at=None,
            updated_at=now,
            group=f"g{k}",
            alert_ids=(),
            active_alert_ids=(),
            sensors=(),
            gateways=(),
        )
        changes.append(IncidentChange("opened", inc, TimelineEntry(now, "opened", "rule:gas", "mở", "open")))
    rows, _ = svc.notifier.planner.plan(changes, [], now)
    assert len(rows) == 500
    rig.repo.incidents.commit_step(
        StepWrite(
            incidents=tuple(IncidentRecord.from_domain(c.incident) for c in changes),
            notifications=tuple(rows),
        )
    )
    svc.notifier.sender.wake()
    wait(lambda: rig.store.counts()["pending"] == 0, "the burst handled")
    idle(svc, rig)
    mails = rig.smtp.messages()
    assert len(mails) <= 5
    digests = [m for m in mails if "Tổng hợp" in str(m["Subject"])]
    assert len(digests) == 1 and len(mails) == 5
    assert "496" in digests[0].get_content()
    assert rig.store.counts() == {"pending": 0, "sent": 500, "failed": 0}


def test_whoever_was_told_hears_that_a_person_resolved_the_incident(rig: Rig, gateway: Publisher) -> None:
    svc = rig.service()
    incident_id = gas_leak(svc, gateway)
    rig.smtp.wait_for(lambda ms: len(ms) >= 1, WAIT_S, "the first email")
    act = HumanAction(
        incident_id=incident_id,
        action="resolve",
        by="tran.van.b",
        at=datetime.now(UTC),
        note="Đã khóa van, thông gió",
    )
    stored = rig.repo.incidents.apply_incident_action(incident_id, mutation(act))
    assert stored is not None
    svc.on_action(act, stored)
    rig.smtp.wait_for(lambda ms: len(ms) >= 2, WAIT_S, "the resolved email")
    idle(svc, rig)
    subjects = [str(m["Subject"]) for m in rig.smtp.to(DUTY)]
    assert len(subjects) == 2 and "Đã xử lý xong" in subjects[1]
    assert not rig.smtp.to(LEADER)  # never told of it: not told it is over either


def pending_email(ident: str, k: int, now: datetime) -> NotificationRecord:
    """An email to the duty officer about incident `k`, due `now`."""
    return NotificationRecord(
        id=ident,
        incident_id=f"incident-{k}",
        site=SITE,
        contact="ax-truc-ban",
        channel="email",
        reason="opened",
        state="pending",
        created_at=now,
        next_attempt_at=now,
        subject=f"sự cố {k}",
        body=f"sự cố {k}",
    )


def test_two_senders_on_one_store_send_each_message_once(rig: Rig) -> None:
    """Two ops processes (high availability) share the outbox: an attempt claims its rows."""
    from ops_center.notify.channels import SmtpChannel
    from ops_center.notify.loader import parse_policy
    from ops_center.notify.sender import NotificationSender, SenderConfig

    policy = parse_policy(policy_text(60.0, max_messages=1000), registry=REGISTRY)
    now = datetime.now(UTC)
    rig.store.add([pending_email(f"ha{k:03d}", k, now) for k in range(60)])
    senders = []
    for _ in range(2):
        repo = open_repository(rig.db_url)
        assert isinstance(repo, SqlOpsRepository)
        senders.append(
            NotificationSender(
                SqlNotificationStore(repo),
                repo.incidents,
                policy,
                REGISTRY,
                {"email": SmtpChannel(rig.smtp.url, "ioc@example.vn")},
                SenderConfig(public_url="https://ioc.example.vn", ack_secret=None, poll_s=0.1),
            )
        )
    for s in senders:
        s.start()
    try:
        wait(lambda: rig.store.counts()["sent"] == 60, "all 60 sent")
    finally:
        for s in senders:
            s.stop()
    subjects = [str(m["Subject"]) for m in rig.smtp.messages()]
    assert len(subjects) == 60 and len(set(subjects)) == 60
    assert sum(s.stats.sent for s in senders) == 60


def test_a_message_beyond_a_full_window_waits_without_busy_looping(rig: Rig) -> None:
    svc = rig.service(max_messages=1)
    assert svc.notifier is not None
    now = datetime.now(UTC)
    rows = [pending_email(f"w{k}", k, now) for k in range(2)]
    rig.store.add(rows[:1])
    svc.notifier.sender.wake()
    rig.smtp.wait_for(lambda ms: len(ms) == 1, WAIT_S, "the first message")
    rig.store.add(rows[1:])
    svc.notifier.sender.wake()
    wait(
        lambda: (r := rig.store.get("w1")) is not None and r.next_attempt_at > datetime.now(UTC),
        "the second one postponed to the window's end",
    )
    # Waiting, not spinning: the sender wakes at its poll interval (0.2 s), not every few ms.
    sender = svc.notifier.sender
    cycles, t0 = sender.stats.cycles, time.monotonic()
    wait(lambda: sender.stats.cycles >= cycles + 3, "three more cycles")
    assert time.monotonic() - t0 >= 0.3
    row = rig.store.get("w1")
    assert row is not None and row.state == "pending" and row.attempts == 0
    assert len(rig.smtp.messages()) == 1
