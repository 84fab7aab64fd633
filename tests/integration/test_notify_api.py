"""The notifications API and the outbox SQL on both stores (SQLite and a real TimescaleDB, i.e. PostgreSQL):
the scoped list, the admin's contacts, the acknowledge link (signed, single use, bound to its
contact, audited as that contact, stops escalation), the timeline and ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ops_center.adapters.records import (
    NotificationRecord,
    NotifyChannel,
    NotifyReason,
    ResolvedNotice,
    notification_id,
)
from ops_center.adapters.repository import StepWrite
from ops_center.adapters.sql import SqlOpsRepository
from ops_center.adapters.sql_notifications import SqlNotificationStore
from ops_center.notify import acklink
from tests.support.api import SECRET, Env, auth, pg_env, sqlite_env

POLICY = """\
version: 1
contacts:
  - id: tn-truc-ban
    name: "Trực ban phường Thống Nhất"
    email: trucban.thongnhat@example.vn
    phone: "+84912345678"
    sites: [thong-nhat]
policies:
  - id: tn-serious
    sites: [thong-nhat]
    min_severity: critical
    channels: [email, sms]
    notify: [tn-truc-ban]
"""


@pytest.fixture(params=["sqlite", pytest.param("timescale", marks=pytest.mark.integration)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, "utf-8")
    over: dict[str, Any] = {"notify_policy": policy, "public_url": "https://ioc.example.vn"}
    if request.param == "sqlite":
        yield from sqlite_env(tmp_path / "app.db", **over)
    else:
        yield from pg_env(request.getfixturevalue("timescale_db"), **over)


def store(env: Env) -> SqlNotificationStore:
    assert isinstance(env.repo, SqlOpsRepository)
    return SqlNotificationStore(env.repo)


def row(
    incident: str,
    site: str,
    contact: str,
    channel: NotifyChannel = "email",
    reason: NotifyReason = "opened",
    env: Env | None = None,
) -> NotificationRecord:
    now = env.seed.now if env is not None else None
    assert now is not None
    return NotificationRecord(
        id=notification_id(incident, contact, channel, reason),
        incident_id=incident,
        site=site,
        contact=contact,
        channel=channel,
        reason=reason,
        state="pending",
        created_at=now,
        next_attempt_at=now,
        subject="[Nghiêm trọng/Critical] Sự cố mới",
        body="Ô nhiễm",
    )


def test_outbox_rows_are_written_once_per_key_in_the_step_and_resolved_tells_whoever_was_told(
    env: Env,
) -> None:
    r = env.repo.incidents
    first = row("inc-tn-1", "thong-nhat", "tn-truc-ban", env=env)
    sms = row("inc-tn-1", "thong-nhat", "tn-truc-ban", "sms", env=env)
    r.commit_step(StepWrite(notifications=(first, sms)))
    r.commit_step(StepWrite(notifications=(first,)))  # a replayed step: no second row
    at = env.seed.now + timedelta(minutes=5)
    done = ResolvedNotice("inc-tn-1", "thong-nhat", at, "Đã xử lý", "xong")
    r.commit_step(StepWrite(resolved=(done,)))
    r.commit_step(StepWrite(resolved=(done,)))
    rows = store(env).list(None, "inc-tn-1", 50, 0).items
    assert sorted((n.channel, n.reason) for n in rows) == [
        ("email", "opened"),
        ("email", "resolved"),
        ("sms", "opened"),
        ("sms", "resolved"),
    ]
    s = store(env)
    due = s.due(at, 10)
    assert len(due) == 4
    s.mark_failed(due[0], at, "SMTP unavailable", at + timedelta(seconds=2))
    assert len(s.due(at, 10)) == 3 and s.next_due() == env.seed.now
    s.mark_sent(due[1:2], at, due[1].id)
    assert s.deliveries_since("tn-truc-ban", due[1].channel, at - timedelta(minutes=1)) == 1
    s.mark_failed(due[2], at, "HTTP 401", None)
    assert s.counts() == {"pending": 2, "sent": 1, "failed": 1}
    timeline = r.get_incident("inc-tn-1")
    assert timeline is not None
    assert {e.action for e in timeline.timeline} >= {"notified", "notify_failed"}


def test_notifications_are_listed_within_the_users_scope(env: Env) -> None:
    store(env).add(
        [
            row("inc-tn-1", "thong-nhat", "tn-truc-ban", env=env),
            row("inc-ax-1", "an-xa", "ax-someone", env=env),
        ]
    )
    c = env.client
    r = c.get("/api/v1/notifications", headers=auth(env.tokens["tn-staff"]))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [
        (i["incident_id"], i["contact"], i["channel"], i["reason"], i["state"], i["attempts"]) for i in items
    ] == [("inc-tn-1", "tn-truc-ban", "email", "opened", "pending", 0)]
    assert (
        c.get("/api/v1/notifications?site=an-xa", headers=auth(env.tokens["tn-staff"])).json()["items"] == []
    )
    r = c.get("/api/v1/notifications?incident=inc-ax-1", headers=auth(env.tokens["admin"]))
    assert [i["site"] for i in r.json()["items"]] == ["an-xa"]
    assert c.get("/api/v1/notifications").status_code == 401
    assert (
        c.get("/api/v1/notifications?incident=bad%20id", headers=auth(env.tokens["admin"])).status_code == 422
    )


def test_contacts_are_for_admins(env: Env) -> None:
    c = env.client
    assert c.get("/api/v1/contacts", headers=auth(env.tokens["tn-staff"])).status_code == 403
    r = c.get("/api/v1/contacts", headers=auth(env.tokens["admin"]))
    assert r.status_code == 200
    assert r.json()["items"] == [
        {
            "id": "tn-truc-ban",
            "name": "Trực ban phường Thống Nhất",
            "sites": ["thong-nhat"],
            "channels": ["email", "sms", "zalo"],
            "email": "trucban.thongnhat@example.vn",
            "phone": "+84912345678",
            "url": None,
        }
    ]


def test_the_acknowledge_link_acknowledges_once_as_its_contact(env: Env) -> None:
    n = row("inc-tn-1", "thong-nhat", "tn-truc-ban", env=env)
    store(env).add([n])
    token = acklink.sign(SECRET, n.id, env.seed.now + timedelta(hours=2))
    c = env.client
    page = c.get(f"/api/v1/ack/{token}")
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    incident = env.repo.incidents.get_incident("inc-tn-1")
    assert incident is not None and incident.incident.state == "open"  # a GET changes nothing

    done = c.post(f"/api/v1/ack/{token}")
    assert done.status_code == 200 and "Đã xác nhận" in done.text
    detail = env.repo.incidents.get_incident("inc-tn-1")
    assert detail is not None and detail.incident.state == "acknowledged"
    ack = [e for e in detail.timeline if e.action == "acknowledged"]
    assert [e.actor for e in ack] == ["contact:tn-truc-ban"]
    audit = env.repo.users.audit_entries(50, 0).items
    assert any(
        a.actor == "contact:tn-truc-ban" and a.action == "incident.acknowledge" and a.outcome == "ok"
        for a in audit
    )

    assert c.post(f"/api/v1/ack/{token}").status_code == 410  # single use
    assert c.get(f"/api/v1/ack/{token}").status_code == 410
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert c.post(f"/api/v1/ack/{forged}").status_code == 404
    expired = acklink.sign(SECRET, n.id, env.seed.now - timedelta(seconds=1))
    assert c.post(f"/api/v1/ack/{expired}").status_code == 410


def test_failed_notifications_are_on_metrics(env: Env) -> None:
    s = store(env)
    n = row("inc-tn-1", "thong-nhat", "tn-truc-ban", env=env)
    s.add([n])
    s.mark_failed(n, env.seed.now, "HTTP 401", None)
    text = env.client.get("/metrics").text
    assert 'smartward_notifications{state="failed"} 1.0' in text


def test_a_resolve_through_the_api_inserts_the_resolved_rows_in_its_own_transaction(env: Env) -> None:
    """Issue #13: created with the change that causes it (no ops service runs here), once per
    (incident, contact, channel, reason), for whoever was told of the incident before."""
    s = store(env)
    s.add(
        [
            row("inc-tn-1", "thong-nhat", "tn-truc-ban", env=env),
            row("inc-tn-1", "thong-nhat", "tn-truc-ban", "sms", env=env),
            row("inc-ax-1", "an-xa", "ax-someone", env=env),
        ]
    )
    c, h = env.client, auth(env.tokens["tn-staff"])
    r = c.post("/api/v1/incidents/inc-tn-1/resolve", json={"note": "Đã xử lý xong"}, headers=h)
    assert r.status_code == 200, r.text
    resolved = [n for n in s.list(None, "inc-tn-1", 50, 0).items if n.reason == "resolved"]
    assert sorted((n.contact, n.channel, n.state, n.attempts) for n in resolved) == [
        ("tn-truc-ban", "email", "pending", 0),
        ("tn-truc-ban", "sms", "pending", 0),
    ]
    assert all(n.subject.startswith("[Nghiêm trọng/Critical] Đã xử lý xong: ") for n in resolved)
    assert all("https://ioc.example.vn/screen/?incident=inc-tn-1" in n.body for n in resolved)
    assert {n.id for n in resolved} == {
        notification_id("inc-tn-1", "tn-truc-ban", ch, "resolved") for ch in ("email", "sms")
    }
    # Resolving again is refused; the ops service's own notice, later, is a no-op.
    again = c.post("/api/v1/incidents/inc-tn-1/resolve", json={"note": "lần hai"}, headers=h)
    assert again.status_code == 409
    at = env.seed.now + timedelta(minutes=5)
    other = ResolvedNotice("inc-tn-1", "thong-nhat", at, "khác", "khác")
    env.repo.incidents.commit_step(StepWrite(resolved=(other,)))
    assert s.counts() == {"pending": 5, "sent": 0, "failed": 0}
    assert [n.subject for n in s.list(None, "inc-tn-1", 50, 0).items if n.reason == "resolved"] == [
        n.subject for n in resolved
    ]
    # An acknowledgement tells nobody; a resolve of an incident nobody was told of neither.
    h_ax = auth(env.tokens["ax-manager"])
    assert c.post("/api/v1/incidents/inc-ax-1/acknowledge", headers=h_ax).status_code == 200
    assert [n.reason for n in s.list(None, "inc-ax-1", 50, 0).items] == ["opened"]
    assert c.post("/api/v1/incidents/inc-qt-1/resolve", json={"note": "xong"},
                  headers=auth(env.tokens["admin"])).status_code == 200
    assert s.list(None, "inc-qt-1", 50, 0).items == []


def test_a_resolve_without_a_policy_inserts_nothing(tmp_path: Path) -> None:
    for e in sqlite_env(tmp_path / "none.db", public_url="https://ioc.example.vn"):
        store(e).add([row("inc-tn-1", "thong-nhat", "tn-truc-ban", env=e)])
        r = e.client.post("/api/v1/incidents/inc-tn-1/resolve", json={"note": "xong"},
                          headers=auth(e.tokens["tn-staff"]))
        assert r.status_code == 200, r.text
        assert [n.reason for n in store(e).list(None, "inc-tn-1", 50, 0).items] == ["opened"]
