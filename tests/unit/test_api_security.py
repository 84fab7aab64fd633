"""Security building blocks without servers: settings refuse placeholder secrets, tokens are
pinned to HS256 with iss/aud/exp (S5), login limits (S8), scopes, the broker log parser,
readings planning."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from contract.registry import load_registry
from ops_center.adapters.records import RollupPoint
from ops_center.api.errors import ApiError
from ops_center.api.series import aggregate, align, plan
from ops_center.security.broker_log import BrokerLogParser
from ops_center.security.passwords import PasswordPolicyError, Passwords
from ops_center.security.ratelimit import LoginLimiter
from ops_center.security.scope import Scope
from ops_center.security.tokens import TokenError, TokenService
from ops_center.settings import OpsSettings, SecretKeyError

KEY = "k" * 48
REG = load_registry()


def tokens(now: datetime | None = None) -> TokenService:
    return TokenService(
        KEY,
        issuer="smartward",
        audience="smartward-api",
        access_ttl_s=900,
        refresh_ttl_s=3600,
        clock=(lambda: now) if now else None,
    )


@pytest.mark.parametrize("secret", [None, "", "changethis", "secret", "short-but-random-9"])
def test_settings_refuse_a_missing_or_placeholder_secret_outside_demo(
    secret: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMARTWARD_SECRET_KEY", raising=False)
    with pytest.raises((SecretKeyError, ValueError)):
        OpsSettings(environment="production", secret_key=secret)
    demo = OpsSettings(environment="demo", secret_key=secret)
    assert len(demo.signing_key()) >= 32


def test_settings_accept_a_real_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTWARD_SECRET_KEY", KEY)
    s = OpsSettings()
    assert s.environment == "production" and s.signing_key() == KEY
    assert KEY not in repr(s)


def test_tokens_round_trip_and_refuse_every_forgery() -> None:
    svc = tokens()
    good = svc.issue("access", user="tn-staff", role="ward_staff", sites=("thong-nhat",), version=2).token
    claims = svc.verify(good, "access")
    assert (claims.sub, claims.role, claims.sites, claims.ver) == (
        "tn-staff",
        "ward_staff",
        ("thong-nhat",),
        2,
    )
    raw = jwt.decode(good, options={"verify_signature": False})
    b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    forged = {
        "none": f"{b64({'alg': 'none'})}.{b64(raw)}.",
        "wrong_key": jwt.encode(raw, "x" * 48, algorithm="HS256"),
        "hs384": jwt.encode(raw, KEY, algorithm="HS384"),
        "expired": jwt.encode({**raw, "exp": 1}, KEY, algorithm="HS256"),
        "audience": jwt.encode({**raw, "aud": "other"}, KEY, algorithm="HS256"),
        "issuer": jwt.encode({**raw, "iss": "other"}, KEY, algorithm="HS256"),
        "no_typ": jwt.encode({k: v for k, v in raw.items() if k != "typ"}, KEY, algorithm="HS256"),
        "bad_role": jwt.encode({**raw, "role": "root"}, KEY, algorithm="HS256"),
        "bad_sites": jwt.encode({**raw, "sites": "thong-nhat"}, KEY, algorithm="HS256"),
        "tampered": good.split(".")[0] + "." + b64({**raw, "role": "admin"}) + "." + good.split(".")[2],
    }
    for name, token in forged.items():
        with pytest.raises(TokenError):
            svc.verify(token, "access")
            pytest.fail(name)
    with pytest.raises(TokenError):
        svc.verify(good, "refresh")


def test_login_limiter_counts_attempts_per_address_and_failures_per_user() -> None:
    now = [1000.0]
    lim = LoginLimiter(attempts_per_ip=3, failures_per_user=2, window_s=60, clock=lambda: now[0])
    for _ in range(2):
        assert lim.check("1.1.1.1", "Admin") is None
        lim.attempted("1.1.1.1")
        lim.failed("admin")
    assert lim.check("2.2.2.2", "ADMIN") == 60  # the user is locked from any address
    assert lim.check("1.1.1.1", "other") is None
    lim.attempted("1.1.1.1")
    assert lim.check("1.1.1.1", "other") == 60  # the address is out of attempts
    now[0] += 61
    assert lim.check("1.1.1.1", "admin") is None


def test_scope_decides_visibility_in_one_place() -> None:
    ward = Scope.for_user("a", "ward_staff", ["thong-nhat", "gone-site"], REG.sites)
    assert ward.sites == {"thong-nhat"} and ward.can_see("thong-nhat") and not ward.can_see("an-xa")
    assert not ward.can_see(None) and ward.narrow("an-xa") == () and ward.narrow(None) == ("thong-nhat",)
    leader = Scope.for_user("b", "city_leader", [], REG.sites)
    assert leader.can_see("an-xa") and leader.can_see(None) and leader.site_filter() is None
    assert not leader.may("incident.resolve") and leader.may("incident.note") and leader.may("city.read")
    assert ward.may("incident.resolve") and not ward.may("admin")


def test_passwords_hash_verify_and_policy() -> None:
    pw = Passwords()
    h = pw.hash("correct-horse-battery")
    assert h.startswith("$argon2id$") and pw.verify(h, "correct-horse-battery") and not pw.verify(h, "nope")
    assert not pw.verify(None, "correct-horse-battery")
    with pytest.raises(PasswordPolicyError):
        pw.hash("short")


def test_broker_log_lines_become_security_events() -> None:
    p = BrokerLogParser(REG)
    assert p.parse("2026-11-28T06:32:37: New connection from 10.0.0.5:57683 on port 1883.\n") is None
    ev = p.parse("2026-11-28T06:32:37: Client <unknown> disconnected, not authorised.\n")
    assert ev is not None and ev.kind == "connect_refused" and ev.ip == "10.0.0.5" and ev.client is None
    ev = p.parse(
        "1764311572: Denied PUBLISH from tn-gw-01 (d0, q1, r0, m1, "
        "'smartward/v1/quang-trung/qt-gw-01/telemetry', ... (1 bytes))"
    )
    assert ev is not None and (ev.kind, ev.site, ev.gateway) == ("publish_denied", "thong-nhat", "tn-gw-01")
    assert "quang-trung/qt-gw-01" in ev.detail
    assert p.parse("2026-11-28T06:32:38: Sending PUBACK to tn-gw-01 (m1, rc135)") is None


def test_readings_plan_is_bounded() -> None:
    s = OpsSettings(environment="demo")
    t0 = datetime(2026, 11, 28, tzinfo=UTC)
    assert plan(t0, t0 + timedelta(hours=1), None, s).source == "readings"
    auto = plan(t0, t0 + timedelta(days=2), None, s)
    assert auto.source == "readings_1m" and (2 * 86400) / auto.width_s <= s.readings_points_max
    assert plan(t0, t0 + timedelta(days=365), None, s).source == "readings_1h"
    for args in (
        (None, t0, None),
        (t0, None, None),
        (t0, t0, None),
        (t0, t0 + timedelta(days=900), None),
        (t0, t0 + timedelta(days=30), "1m"),
        (t0, t0 + timedelta(hours=1), "2w"),
    ):
        with pytest.raises(ApiError) as err:
            plan(*args, s)  # type: ignore[arg-type]
        assert err.value.status == 422


def test_rollup_aggregation_is_exact_and_aligned_on_vietnamese_days() -> None:
    t0 = datetime(2026, 11, 28, 16, 30, tzinfo=UTC)  # 23:30 in Hà Nội
    rows = [RollupPoint(t0 + timedelta(minutes=30 * i), 1.0 * i, 2.0 * i, 10, 10.0 * i) for i in range(4)]
    days = aggregate(rows, 86_400)
    assert [d.time for d in days] == [
        datetime(2026, 11, 27, 17, tzinfo=UTC),
        datetime(2026, 11, 28, 17, tzinfo=UTC),
    ]
    assert days[0].count == 10 and days[1].count == 30 and days[1].value == pytest.approx(2.0)
    assert align(t0, 3600) == datetime(2026, 11, 28, 16, tzinfo=UTC)
