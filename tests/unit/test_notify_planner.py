"""From incident changes to outbox rows (inside the evaluation step): openings and rises in
severity to the first tier, resolved to whoever was told, nothing for late or merged incidents,
the same keys on a replay."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from contract.registry import load_registry
from ops_center.domain.incidents import Incident, IncidentChange, TimelineEntry
from ops_center.notify.loader import parse_policy
from ops_center.notify.planner import NotificationPlanner

REG = load_registry()
NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # 10:00 Vietnam time: no quiet hours
POLICY = parse_policy(
    """\
version: 1
contacts:
  - id: tn-truc-ban
    name: "Trực ban"
    email: tb@example.vn
    phone: "+84912345678"
    sites: [thong-nhat]
policies:
  - id: tn
    sites: [thong-nhat]
    min_severity: critical
    channels: [email, sms]
    notify: [tn-truc-ban]
    quiet_hours: {from: "22:00", to: "06:00", min_severity: emergency}
""",
    registry=REG,
)


def incident(severity: str = "critical", **kw: object) -> Incident:
    base = Incident(
        id="inc-1",
        site="thong-nhat",
        kind="flooding",
        severity=severity,  # type: ignore[arg-type]
        state="open",
        title_vi="Ngập úng tại tn-flood-01",
        title_en="Flooding at tn-flood-01",
        opened_at=NOW,
        acknowledged_at=None,
        resolved_at=None,
        updated_at=NOW,
        group="thong-nhat",
        alert_ids=(),
        active_alert_ids=(),
        sensors=(),
        gateways=(),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def change(action: str, inc: Incident) -> IncidentChange:
    return IncidentChange(action, inc, TimelineEntry(NOW, action, "rule:x", "vi", "en"))  # type: ignore[arg-type]


def test_an_opening_makes_one_row_per_channel_of_the_first_tier() -> None:
    planner = NotificationPlanner(POLICY, REG, "https://ioc.example.vn")
    rows, resolved = planner.plan([change("opened", incident())], [], NOW)
    assert sorted((r.contact, r.channel, r.reason, r.state) for r in rows) == [
        ("tn-truc-ban", "email", "opened", "pending"),
        ("tn-truc-ban", "sms", "opened", "pending"),
    ]
    assert resolved == []
    assert all("Ngập úng tại" in r.body and "tn-flood-01" not in r.body.split("\n")[0] for r in rows)
    # A replayed step after a restart plans the same keys (the outbox makes them no-ops).
    again, _ = NotificationPlanner(POLICY, REG, "https://ioc.example.vn").plan(
        [change("opened", incident())], [], NOW
    )
    assert {r.id for r in again} == {r.id for r in rows}


def test_a_rise_in_severity_notifies_once_it_reaches_the_policy() -> None:
    planner = NotificationPlanner(POLICY, REG, "https://ioc.example.vn")
    assert planner.plan([change("opened", incident("warning"))], [], NOW) == ([], [])
    rows, _ = planner.plan([change("alert_updated", incident("critical"))], [], NOW)
    assert {(r.reason, r.channel) for r in rows} == {("severity", "email"), ("severity", "sms")}
    assert planner.plan([change("alert_updated", incident("critical"))], [], NOW) == ([], [])  # not a rise


def test_resolved_late_and_merged_incidents() -> None:
    planner = NotificationPlanner(POLICY, REG, "https://ioc.example.vn")
    rows, resolved = planner.plan([change("resolved", incident(state="resolved", resolved_at=NOW))], [], NOW)
    assert rows == [] and [r.incident_id for r in resolved] == ["inc-1"]
    assert "Đã xử lý xong" in resolved[0].subject
    assert planner.plan([change("opened", incident(late=True))], [], NOW) == ([], [])
    assert planner.plan([change("opened", incident(merged_into="inc-2"))], [], NOW) == ([], [])


def test_quiet_hours_hold_back_a_critical_opening_at_night() -> None:
    planner = NotificationPlanner(POLICY, REG, "https://ioc.example.vn")
    night = NOW + timedelta(hours=14)  # 00:00 Vietnam time
    assert planner.plan([change("opened", incident("critical"))], [], night) == ([], [])
    rows, _ = planner.plan([change("opened", incident("emergency", id="inc-9"))], [], night)
    assert len(rows) == 2
