"""The notification policy (pure), its loader, message text and acknowledge links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contract.registry import load_registry
from ops_center.adapters.records import AlertRecord, IncidentRecord
from ops_center.domain.notify import IncidentFacts, RateLimit, allowance, backoff_s
from ops_center.notify import acklink
from ops_center.notify.loader import PolicyError, load_policy, parse_policy
from ops_center.notify.render import render, render_digest

POLICY = """\
version: 1
rate_limit: {max_messages: 5, window_min: 10}
contacts:
  - id: tn-truc-ban
    name: "Trực ban phường Thống Nhất"
    email: trucban.thongnhat@example.vn
    phone: "+84912345678"
    sites: [thong-nhat]
  - id: tn-lanh-dao
    name: "Lãnh đạo phường"
    email: lanhdao@example.vn
    sites: [thong-nhat]
  - id: city-hook
    name: "Hệ thống thành phố"
    url: http://127.0.0.1:9/hook
policies:
  - id: tn-serious
    sites: [thong-nhat]
    min_severity: critical
    kinds: []
    channels: [email, sms]
    notify: [tn-truc-ban]
    escalate:
      - after_min: 15
        notify: [tn-lanh-dao]
    quiet_hours: {from: "22:00", to: "06:00", min_severity: emergency}
  - id: city
    min_severity: emergency
    kinds: [flooding]
    channels: [webhook]
    notify: [city-hook]
"""

OPENED = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # 10:00 Vietnam time


def inc(severity: str = "critical", kind: str = "flooding", site: str = "thong-nhat") -> IncidentFacts:
    return IncidentFacts("inc-1", site, kind, severity, OPENED)  # type: ignore[arg-type]


def test_policy_example_of_the_contract_loads() -> None:
    p = parse_policy(POLICY, registry=load_registry())
    assert set(p.contacts) == {"tn-truc-ban", "tn-lanh-dao", "city-hook"}
    assert p.limit_of("tn-truc-ban") == RateLimit(5, 10)


def test_first_tier_hears_an_opening_on_each_of_its_channels() -> None:
    p = parse_policy(POLICY)
    got = {(i.contact, i.channel, i.reason, i.step) for i in p.on_change(inc(), "opened", OPENED)}
    assert got == {("tn-truc-ban", "email", "opened", 0), ("tn-truc-ban", "sms", "opened", 0)}


def test_min_severity_includes_every_higher_severity() -> None:
    p = parse_policy(POLICY)
    assert p.on_change(inc("warning"), "opened", OPENED) == []
    emergency = {(i.contact, i.channel) for i in p.on_change(inc("emergency"), "opened", OPENED)}
    assert emergency == {("tn-truc-ban", "email"), ("tn-truc-ban", "sms"), ("city-hook", "webhook")}


def test_policy_matches_sites_and_kinds() -> None:
    p = parse_policy(POLICY)
    assert p.on_change(inc(site="quang-trung"), "opened", OPENED) == []
    assert [i.contact for i in p.on_change(inc("emergency", kind="noise"), "opened", OPENED)] == [
        "tn-truc-ban",
        "tn-truc-ban",
    ]


def test_quiet_hours_hold_back_all_but_the_override_severity() -> None:
    p = parse_policy(POLICY)
    night = datetime(2026, 12, 7, 16, 30, tzinfo=UTC)  # 23:30 Vietnam time
    early = datetime(2026, 12, 6, 22, 59, tzinfo=UTC)  # 05:59 Vietnam time
    assert p.on_change(inc("critical"), "opened", night) == []
    assert p.on_change(inc("critical"), "opened", early) == []
    assert p.on_change(inc("emergency"), "opened", night) != []
    six = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)  # 06:00: quiet hours are over
    assert p.on_change(inc("critical"), "opened", six) != []


def test_escalation_steps_count_from_the_opening_and_notify_only_their_contacts() -> None:
    p = parse_policy(POLICY)
    f = inc()
    assert p.due_escalations(f, OPENED + timedelta(minutes=14, seconds=59)) == []
    due = p.due_escalations(f, OPENED + timedelta(minutes=15))
    assert {(i.contact, i.channel, i.reason, i.step) for i in due} == {
        ("tn-lanh-dao", "email", "escalated", 1)
    }
    assert p.due_escalations(f, OPENED + timedelta(minutes=30), after_step=1) == []
    assert p.next_escalation(f) == OPENED + timedelta(minutes=15)
    assert p.next_escalation(f, after_step=1) is None


def test_rate_limit_folds_a_burst_into_one_digest() -> None:
    limit = RateLimit(5, 10)
    assert allowance(limit, 0, 3) == (3, False)
    assert allowance(limit, 0, 5) == (5, False)
    assert allowance(limit, 0, 500) == (4, True)  # 4 single messages + 1 digest = 5
    assert allowance(limit, 4, 10) == (0, True)
    assert allowance(limit, 5, 10) == (0, False)  # the window is full: wait


def test_backoff_doubles_and_is_capped_at_60_s() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_s(30) == 60


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (POLICY.replace("notify: [tn-truc-ban]", "notify: [nobody]"), 22, "unknown contact 'nobody'"),
        (POLICY.replace("min_severity: critical", "min_severity: severe"), 19, "min_severity"),
        (POLICY.replace("channels: [email, sms]", "channels: [email, fax]"), 21, "channels"),
        (POLICY.replace('from: "22:00"', 'from: "25:00"'), 26, "HH:MM"),
        (
            POLICY.replace(
                "    sites: [thong-nhat]\n  - id: tn-lanh-dao", "    colour: red\n  - id: tn-lanh-dao"
            ),
            8,
            "colour",
        ),
        (POLICY.replace("id: tn-lanh-dao", "id: tn-truc-ban"), 9, "duplicate contact id"),
        (
            POLICY.replace("sites: [thong-nhat]\n    min_severity", "sites: [atlantis]\n    min_severity"),
            18,
            "unknown site 'atlantis'",
        ),
    ],
)
def test_policy_errors_name_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(text, source="policy.yaml", registry=load_registry())
    assert err.value.line == line, str(err.value)
    assert needle in str(err.value)
    assert str(err.value).startswith(f"policy.yaml:{line}: ")


def test_without_a_file_nobody_is_notified() -> None:
    p = load_policy(None)
    assert not p.active
    assert p.on_change(inc("emergency"), "opened", OPENED) == []


def _incident() -> IncidentRecord:
    return IncidentRecord(
        id="5b1f0c9e-0000-4000-8000-000000000001",
        site="thong-nhat",
        kind="flooding",
        severity="emergency",
        state="open",
        title_vi="Ngập úng tại đường Hàn Thuyên",
        title_en="Flooding at Han Thuyen street",
        opened_at=datetime(2026, 12, 6, 19, 14, tzinfo=UTC),
        updated_at=OPENED,
    )


def test_message_is_vietnamese_first_short_and_names_places_not_slugs() -> None:
    alert = AlertRecord(
        id="a1",
        rule="flood",
        site="thong-nhat",
        severity="emergency",
        state="active",
        opened_at=OPENED,
        updated_at=OPENED,
        sensor="tn-flood-01",
        message_vi="Mực nước 42 cm trên mặt đường",
        message_en="Water 42 cm above the road",
    )
    m = render(_incident(), [alert], "opened", load_registry(), "https://ioc.example.vn/")
    vi, en, link = m.body.split("\n")
    assert vi.startswith(
        "[KHẨN CẤP] Sự cố mới: Ngập úng tại đường Hàn Thuyên (Phường Thống Nhất), 02:14 07/12/2026."
    )
    assert "Mực nước 42 cm" in vi
    assert en.startswith("[EMERGENCY] New incident: Flooding at Han Thuyen street (Thong Nhat ward).")
    assert link == "https://ioc.example.vn/screen/?incident=5b1f0c9e-0000-4000-8000-000000000001"
    assert "thong-nhat" not in vi + en
    assert len(m.body) <= 459  # at most a 3-part Unicode SMS... with room for the acknowledge link
    assert m.subject.startswith("[KHẨN CẤP/EMERGENCY] Sự cố mới: Ngập úng")


def test_digest_counts_what_it_folds() -> None:
    m = render_digest([], "https://ioc.example.vn", OPENED)
    assert "0 sự cố" in m.subject


def test_acknowledge_link_is_signed_short_lived_and_bound_to_its_notification() -> None:
    secret = "k" * 40
    token = acklink.sign(secret, "abc123", OPENED + timedelta(hours=1))
    claim = acklink.verify(secret, token, OPENED)
    assert claim.notification_id == "abc123"
    with pytest.raises(acklink.AckLinkError, match="expired"):
        acklink.verify(secret, token, OPENED + timedelta(hours=1))
    with pytest.raises(acklink.AckLinkError, match="signature"):
        acklink.verify("x" * 40, token, OPENED)
    forged = token.replace("abc123", "abc124")
    with pytest.raises(acklink.AckLinkError):
        acklink.verify(secret, forged, OPENED)
    with pytest.raises(acklink.AckLinkError, match="malformed"):
        acklink.verify(secret, "../../etc", OPENED)
