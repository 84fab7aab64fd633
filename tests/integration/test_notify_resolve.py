"""A person's resolve and acknowledge through the API while NO ops service runs (issue #13):
the ``resolved`` notification is created in the API's own transaction, so it exists at once
and the ops service delivers it whenever it runs, exactly once; an acknowledgement made while
the service is away stops escalation once it is back. Real servers: Mosquitto, the ops service
on SQLite, the API (FastAPI's test client on the same store), aiosmtpd."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ops_center.adapters.records import NotificationRecord, ResolvedNotice
from ops_center.adapters.repository import OpsRepository, StepWrite
from tests.integration.test_notify_delivery import (
    DUTY,
    LEADER,
    WAIT_S,
    Rig,
    gas_leak,
    idle,
    policy_text,
    wait,
)
from tests.servers.smtp import SmtpServer
from tests.support.api import add_users, auth, build_app, login
from tests.support.ops import Publisher, opened_rig

pytestmark = pytest.mark.integration

PUBLIC_URL = "https://ioc.example.vn"


@pytest.fixture
def rig(mosquitto: Any, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Rig]:
    db_url = f"sqlite:///{tmp_path / 'ops.db'}"

    def make(repo: OpsRepository) -> Rig:
        add_users(repo)
        return Rig(mosquitto(), smtp_server, db_url, repo, tmp_path)
    with opened_rig(db_url, make) as r:
        yield r


@pytest.fixture
def api(rig: Rig) -> Iterator[TestClient]:
    """The API on the rig's store, with the ops service's policy file and NO ops service hook
    (as a separate API process: ``ops_center.api.asgi``)."""
    policy = rig.tmp / "policy.yaml"
    if not policy.exists():
        policy.write_text(policy_text(60.0), "utf-8")
    app = build_app(rig.repo, notify_policy=policy, public_url=PUBLIC_URL)
    with TestClient(app) as client:
        yield client


def headers(client: TestClient, user: str = "ax-manager") -> dict[str, str]:
    return auth(login(client, user))


def stop_services(rig: Rig) -> None:
    for svc in rig.services:
        svc.stop()
    rig.services.clear()


def rows(rig: Rig, incident_id: str) -> list[NotificationRecord]:
    return rig.store.list(None, incident_id, 50, 0).items


def test_a_resolve_while_no_ops_service_runs_creates_the_message_at_once_and_it_arrives_once(
    rig: Rig, gateway: Publisher, api: TestClient
) -> None:
    svc = rig.service()
    incident_id = gas_leak(svc, gateway)
    rig.smtp.wait_for(lambda ms: len(ms) >= 1, WAIT_S, "the first email")
    idle(svc, rig)
    stop_services(rig)  # the ops service is down from here

    h = headers(api)
    r = api.post(f"/api/v1/incidents/{incident_id}/resolve", json={"note": "Đã khóa van"}, headers=h)
    assert r.status_code == 200, r.text
    # In the resolve's own transaction: there now, with no ops service running.
    resolved = [n for n in rows(rig, incident_id) if n.reason == "resolved"]
    assert [(n.contact, n.channel, n.state, n.attempts) for n in resolved] == [
        ("ax-truc-ban", "email", "pending", 0)
    ]
    assert "Đã xử lý xong" in resolved[0].subject
    assert f"{PUBLIC_URL}/screen/?incident={incident_id}" in resolved[0].body
    # Resolving twice is refused and creates nothing; a replayed notice is a no-op.
    again = api.post(f"/api/v1/incidents/{incident_id}/resolve", json={"note": "lần nữa"}, headers=h)
    assert again.status_code == 409
    rig.repo.incidents.commit_step(
        StepWrite(resolved=(ResolvedNotice(incident_id, "an-xa", datetime.now(UTC), "khác", "khác"),))
    )
    assert len([n for n in rows(rig, incident_id) if n.reason == "resolved"]) == 1
    assert len(rig.smtp.messages()) == 1  # nothing sends while the service is down

    # The service comes back (it replays what its snapshot lacks and reconciles the resolve):
    # the message is delivered, once.
    svc = rig.service()
    rig.smtp.wait_for(lambda ms: len(ms) >= 2, WAIT_S, "the resolved email")
    idle(svc, rig)
    subjects = [str(m["Subject"]) for m in rig.smtp.to(DUTY)]
    assert len(rig.smtp.messages()) == 2 and len(subjects) == 2
    assert "Đã xử lý xong" in subjects[1]
    assert not rig.smtp.to(LEADER)
    final = sorted((n.reason, n.state) for n in rows(rig, incident_id))
    assert final == [("opened", "sent"), ("resolved", "sent")]
    # ...and the service restarted once more sends nothing again.
    stop_services(rig)
    svc = rig.service()
    idle(svc, rig)
    assert len(rig.smtp.messages()) == 2


def test_an_acknowledgement_while_no_ops_service_runs_stops_escalation(
    rig: Rig, gateway: Publisher, api: TestClient
) -> None:
    svc = rig.service(escalate_after_min=0.05)  # 3 s
    incident_id = gas_leak(svc, gateway)
    rig.smtp.wait_for(lambda ms: len(ms) >= 1, WAIT_S, "the first email")
    stop_services(rig)
    opened = rows(rig, incident_id)
    assert [n.reason for n in opened] == ["opened"]
    r = api.post(f"/api/v1/incidents/{incident_id}/acknowledge", json={"note": "đang xử lý"},
                 headers=headers(api))
    assert r.status_code == 200, r.text
    assert [n.reason for n in rows(rig, incident_id)] == ["opened"]  # an acknowledgement tells nobody
    deadline = opened[0].created_at + timedelta(minutes=0.05)
    wait(lambda: datetime.now(UTC) > deadline + timedelta(seconds=1), "past the escalation deadline")
    svc = rig.service(escalate_after_min=0.05)
    idle(svc, rig)
    assert len(rig.smtp.messages()) == 1 and not rig.smtp.to(LEADER)
    assert [n.reason for n in rows(rig, incident_id)] == ["opened"]


def test_without_the_acknowledgement_the_restarted_service_escalates(
    rig: Rig, gateway: Publisher
) -> None:
    """The control of the test above: the same story with no acknowledgement escalates."""
    svc = rig.service(escalate_after_min=0.05)
    incident_id = gas_leak(svc, gateway)
    rig.smtp.wait_for(lambda ms: len(ms) >= 1, WAIT_S, "the first email")
    stop_services(rig)
    opened = rows(rig, incident_id)
    deadline = opened[0].created_at + timedelta(minutes=0.05)
    wait(lambda: datetime.now(UTC) > deadline + timedelta(seconds=1), "past the escalation deadline")
    svc = rig.service(escalate_after_min=0.05)
    rig.smtp.wait_for(lambda ms: bool([m for m in ms if LEADER in str(m["To"])]), WAIT_S, "the escalation")
    idle(svc, rig)
    assert len(rig.smtp.to(LEADER)) == 1
