"""The API against a real TimescaleDB with seeded rows: every route of the OpenAPI schema ×
every role (S3/S4), JWT abuse (S5), KPIs, readings limits (S8), incident actions with their
timeline and audit entries."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import psycopg
import pytest

from tests.servers.timescale import TimescaleServer
from tests.support.api import (
    PASSWORD,
    SECRET,
    USERS,
    Env,
    auth,
    pg_env,
)

pytestmark = pytest.mark.integration

OWN: dict[str, str | None] = {
    "tn-staff": "thong-nhat",
    "qt-staff": "quang-trung",
    "ax-manager": "an-xa",
    "leader": None,
    "admin": None,
}
PREFIX = {"thong-nhat": "tn", "quang-trung": "qt", "an-xa": "ax"}
ACTORS = ("ward_staff", "cluster_manager", "admin")  # may acknowledge / resolve / assign


@pytest.fixture
def env(timescale: TimescaleServer) -> Iterator[Env]:
    timescale.ensure_running()
    yield from pg_env(timescale.fresh_db())


def other_site(user: str) -> str | None:
    own = OWN[user]
    return None if own is None else next(s for s in PREFIX if s != own)


def foreign_markers(user: str) -> list[str]:
    """Strings that must never appear in a 2xx answer to ``user``: other sites' ids and
    the prefixes of their gateways, sensors, alerts and incidents."""
    own = OWN[user]
    if own is None:
        return []
    out = []
    for site, p in PREFIX.items():
        if site != own:
            out += [f'"{site}"', f"{p}-gw-", f"{p}-aq-", f"inc-{p}-", f"al-{p}-", f"{site} dead letter"]
    return out


@dataclass(frozen=True)
class Case:
    method: str
    url: str
    expect: frozenset[int]
    body: dict[str, object] | None = None
    empty: bool = False  # a list answer that must be empty (filtered)


def cases(user: str, op: tuple[str, str]) -> list[Case]:
    role = USERS[user][0]
    own = OWN[user] or "thong-nhat"
    other = other_site(user)
    p, q = PREFIX[own], PREFIX.get(other or "", "")
    is_global = OWN[user] is None
    ok, c200 = frozenset({200}), frozenset
    method, path = op
    v1 = "/api/v1"
    if path in (f"{v1}/me", f"{v1}/sites", f"{v1}/catalog"):
        return [Case(method, path, ok)]
    if path == f"{v1}/sites/{{site}}/overview":
        out = [Case(method, f"{v1}/sites/{own}/overview", ok)]
        if other:
            out.append(Case(method, f"{v1}/sites/{other}/overview", c200({404})))
        return out
    if path == f"{v1}/city/overview":
        return [Case(method, path, ok if is_global else c200({403}))]
    if path in (f"{v1}/gateways", f"{v1}/sensors", f"{v1}/alerts", f"{v1}/incidents"):
        out = [Case(method, path, ok), Case(method, f"{path}?site={own}", ok)]
        if other:
            out.append(Case(method, f"{path}?site={other}", ok, empty=True))
        return out
    if path == f"{v1}/readings":
        window = "start=2026-01-01T00:00:00Z&end=2026-01-01T01:00:00Z"
        out = [Case(method, f"{path}?sensor={p}-aq-01&metric=pm25&{window}", ok)]
        if other:
            out.append(Case(method, f"{path}?sensor={q}-aq-01&metric=pm25&{window}", c200({404})))
        return out
    if path == f"{v1}/map":  # the leak markers check the body: no other site's ids in it
        out = [Case(method, path, ok), Case(method, f"{path}?site={own}", ok)]
        if other:
            out.append(Case(method, f"{path}?site={other}", ok))
        return out
    if path == f"{v1}/limits":
        out = [Case(method, f"{path}?sensor={p}-aq-01", ok)]
        if other:
            out.append(Case(method, f"{path}?sensor={q}-aq-01", c200({404})))
        return out
    if path == f"{v1}/incidents/{{incident_id}}":
        out = [Case(method, f"{v1}/incidents/inc-{p}-1", ok)]
        if other:
            out.append(Case(method, f"{v1}/incidents/inc-{q}-1", c200({404})))
        return out
    if path.startswith(f"{v1}/incidents/{{incident_id}}/"):
        action = path.rsplit("/", 1)[1]
        body: dict[str, object] = {"note": f"{user} {action}"}
        if action == "assign":
            body = {"assignee": "admin"}
        allowed = role in ACTORS or action in ("notes", "escalate")
        out = [
            Case(
                method,
                f"{v1}/incidents/inc-{p}-1/{action}",
                c200({200, 409}) if allowed else c200({403}),
                body,
            )
        ]
        if other:
            out.append(Case(method, f"{v1}/incidents/inc-{q}-1/{action}", c200({404}), body))
        return out
    if path == f"{v1}/maintenance" and method == "GET":
        out = [Case(method, path, ok), Case(method, f"{path}?site={own}&active=true", ok)]
        if other:
            out.append(Case(method, f"{path}?site={other}", ok, empty=True))
        return out
    if path == f"{v1}/maintenance":
        window: dict[str, object] = {"scope": "sensor", "target": f"{p}-aq-01", "reason": f"{user} bảo trì"}
        out = [
            Case(method, path, c200({201}) if role in ACTORS else c200({403}), window),
            Case(method, path, c200({422}), {**window, "target": "no-such-sensor"}),
            Case(method, path, c200({422}) if role in ACTORS else c200({403}),
                 {**window, "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}),
        ]
        if other:
            out.append(Case(method, path, c200({404}), {**window, "target": f"{q}-aq-01"}))
        return out
    if path == f"{v1}/maintenance/{{window_id}}":
        may_end = c200({200, 409}) if role in ACTORS else c200({403})
        out = [Case(method, f"{v1}/maintenance/mw-{p}-1", may_end)]
        if other:
            out.append(Case(method, f"{v1}/maintenance/mw-{q}-1", c200({404})))
        return out
    if path == f"{v1}/commands" and method == "GET":
        out = [Case(method, path, ok), Case(method, f"{path}?site={own}&state=pending", ok)]
        if other:
            out.append(Case(method, f"{path}?site={other}", ok, empty=True))
        return out
    if path == f"{v1}/commands":  # POST; no command link in this app: 503 once allowed
        lamp = {"name": "set_lamp", "args": {"on": True, "dim_pct": 60}, "ttl_s": 60}
        mine = f"{p}-lamp-01" if own != "an-xa" else f"{p}-aq-01"  # An Xá has no street lights
        allowed = c200({503} if own != "an-xa" else {422})
        out = [Case(method, path, allowed if role in ACTORS else c200({403}), {**lamp, "sensor": mine})]
        if other:
            out.append(Case(method, path, c200({404}), {**lamp, "sensor": f"{q}-lamp-01"}))
        return out
    if path == f"{v1}/commands/{{command_id}}":
        return [Case(method, f"{path[: -len('{command_id}')]}no-such-command", c200({404}))]
    if path in (f"{v1}/exports/readings.csv", f"{v1}/exports/incidents.csv"):
        span = "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
        out = [Case(method, f"{path}?{span}", ok), Case(method, f"{path}?site={own}&{span}", ok)]
        if other:
            out.append(Case(method, f"{path}?site={other}&{span}", c200({404})))
        return out
    if path == f"{v1}/notifications":
        out = [Case(method, path, ok), Case(method, f"{path}?site={own}", ok)]
        if other:
            out.append(Case(method, f"{path}?site={other}", ok, empty=True))
        return out
    if path == f"{v1}/contacts":
        return [Case(method, path, ok if role == "admin" else c200({403}))]
    if path in (f"{v1}/dead-letters", f"{v1}/audit", f"{v1}/security-events"):
        return [Case(method, path, ok if role == "admin" else c200({403}))]
    if path == f"{v1}/users" and method == "GET":
        return [Case(method, path, ok if role == "admin" else c200({403}))]
    if path == f"{v1}/users":  # admin only; the user made here is changed by the cases below
        may = (lambda code: c200({code})) if role == "admin" else (lambda _: c200({403}))
        new = {"name": f"new-{user}", "role": "ward_staff", "sites": [own], "password": f"{user} mật khẩu"}
        return [
            Case(method, path, may(201), new),
            Case(method, path, may(409), {**new, "name": "tn-staff"}),
            Case(method, path, may(422), {**new, "name": f"bad-{user}", "sites": ["no-such-site"]}),
        ]
    if path.startswith(f"{v1}/users/{{name}}/"):
        action = path.rsplit("/", 1)[1]
        secret = {"password": f"{user} mật khẩu mới"} if action == "password" else None
        may = (lambda code: c200({code})) if role == "admin" else (lambda _: c200({403}))
        return [
            Case(method, f"{v1}/users/new-{user}/{action}", may(200), secret),
            Case(method, f"{v1}/users/no-such-user/{action}", may(404), secret),
        ]
    if path in (f"{v1}/feeds/tt10", f"{v1}/cap/{{site}}.atom", f"{v1}/incidents/{{incident_id}}.cap"):
        def url(site: str, prefix: str) -> str:
            if path.endswith(".cap"):
                return f"{v1}/incidents/inc-{prefix}-1.cap"
            return f"{v1}/cap/{site}.atom" if path.endswith(".atom") else f"{v1}/feeds/tt10?site={site}"

        out = [Case(method, url(own, p), ok)]
        if other:
            out.append(Case(method, url(other, q), c200({404})))
        return out
    if path == f"{v1}/stream":
        return []  # scoping of the stream: test_api_stream.py (a real server; it never ends)
    if path == f"{v1}/stream/ticket":
        return [Case(method, path, ok)]  # a ticket names no site; its stream is scoped as above
    if path == f"{v1}/auth/logout":
        return []  # would end the session these cases run in: test_api_sessions.py
    if path in (f"{v1}/auth/token", f"{v1}/auth/refresh", "/healthz", "/readyz", "/metrics"):
        return []  # public: below
    if path == f"{v1}/ack/{{token}}":
        return []  # the signed link is the credential, bound to one contact: test_notify_api.py
    raise AssertionError(f"route {op} has no case in the isolation matrix: add one")


PUBLIC = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    # An acknowledge link from a message: its signed, single-use token is the credential.
    ("GET", "/api/v1/ack/{token}"),
    ("POST", "/api/v1/ack/{token}"),
}


def seed_maintenance(env: Env) -> None:
    """A window per site (``mw-tn-1``...), in force since an hour, for the DELETE cases."""
    from ops_center.adapters.records import MaintenanceWindowRecord

    start = datetime.now(UTC) - timedelta(hours=1)
    for site, p in PREFIX.items():
        env.repo.maintenance.upsert_maintenance(MaintenanceWindowRecord(
            id=f"mw-{p}-1", site=site, scope="site", target=site, starts_at=start, set_by="admin",
            reason="Bảo trì định kỳ / scheduled"))


def operations(env: Env) -> list[tuple[str, str]]:
    schema = env.client.get("/openapi.json").json()
    return sorted((m.upper(), path) for path, item in schema["paths"].items() for m in item)


def concrete(path: str) -> str:
    path = path.replace("{site}", "thong-nhat").replace("{incident_id}", "inc-tn-1")
    return path.replace("{window_id}", "mw-tn-1").replace("{name}", "tn-staff")


def test_every_route_refuses_a_missing_or_bad_token(env: Env) -> None:
    ops = operations(env)
    assert len(ops) >= 20
    for method, path in ops:
        if (method, path) in PUBLIC:
            continue
        url = concrete(path)
        body = {"note": "x"} if method == "POST" else None
        for headers in ({}, auth("garbage"), {"Authorization": "Basic YWRtaW46eA=="}):
            r = env.client.request(method, url, headers=headers, json=body)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"] in ("not_authenticated", "invalid_token")
            assert r.headers.get("www-authenticate") == "Bearer"


def test_every_route_by_every_role_stays_in_scope(env: Env) -> None:
    """S3/S4: for each operation of the OpenAPI schema and each role: own scope answers,
    another site's resource is 404, another site's list filter is empty, forbidden
    actions are 403, and no 2xx body names another site's ids."""
    seed_maintenance(env)
    ops = operations(env)
    for user in USERS:
        headers = auth(env.tokens[user])
        markers = foreign_markers(user)
        for op in ops:
            for case in cases(user, op):
                r = env.client.request(case.method, case.url, headers=headers, json=case.body)
                assert r.status_code in case.expect, (user, case, r.status_code, r.text[:300])
                if r.status_code >= 400:
                    body = r.json()
                    assert set(body) >= {"error", "detail"} and set(body["detail"]) == {"vi", "en"}, r.text
                    continue
                for marker in markers:
                    assert marker not in r.text, (user, case.url, marker, r.text[:500])
                if case.empty:
                    data = r.json()
                    items = data["items"] if isinstance(data, dict) else data
                    assert items == [], (user, case.url, data)
    # Other sites' incidents were not touched by anyone outside their scope.
    detail = env.repo.incidents.get_incident("inc-ax-1")
    assert detail is not None
    assert {e.actor for e in detail.timeline} <= {"rule:pm25", "ax-manager", "leader", "admin"}
    # Each cross-site attempt is in the audit log (S3: audited).
    audit = env.repo.users.audit_entries(1000, 0).items
    denied = {(a.actor, a.action) for a in audit if a.outcome == "denied"}
    assert ("tn-staff", "scope_denied") in denied
    assert ("tn-staff", "scope_filtered") in denied
    assert ("leader", "denied:incident.acknowledge") in denied
    assert ("tn-staff", "denied:admin") in denied
    assert ("leader", "denied:maintenance.set") in denied
    # Maintenance windows: each set or ended one is audited with who did it.
    done = {(a.actor, a.action) for a in audit if a.outcome == "ok"}
    assert {("tn-staff", "maintenance.set"), ("tn-staff", "maintenance.end"),
            ("ax-manager", "maintenance.end"), ("admin", "maintenance.set")} <= done
    # Users: only the admin changed any, each change audited.
    assert {("admin", "user.add"), ("admin", "user.disable"), ("admin", "user.enable"),
            ("admin", "user.passwd")} <= done
    assert {u.name for u in env.repo.users.list_users()} == {*USERS, "new-admin"}
    windows = env.repo.maintenance.list_maintenance(["an-xa"], None)
    assert {w.set_by for w in windows} == {"admin", "ax-manager"}


def test_city_leader_may_annotate_but_not_acknowledge_or_resolve(env: Env) -> None:
    h = auth(env.tokens["leader"])
    c = env.client
    assert c.post("/api/v1/incidents/inc-qt-1/acknowledge", headers=h, json={}).status_code == 403
    assert c.post("/api/v1/incidents/inc-qt-1/resolve", headers=h, json={"note": "x"}).status_code == 403
    r = c.post("/api/v1/incidents/inc-qt-1/notes", headers=h, json={"note": "Đã báo Sở TN&MT"})
    assert r.status_code == 200
    r = c.post("/api/v1/incidents/inc-qt-1/escalate", headers=h, json={"note": "cần hỗ trợ"})
    assert r.status_code == 200 and r.json()["escalated_at"]
    detail = c.get("/api/v1/incidents/inc-qt-1", headers=h).json()
    assert [e["action"] for e in detail["timeline"]][-2:] == ["annotated", "escalated"]
    assert detail["state"] == "open"


def test_incident_lifecycle_is_on_the_timeline_and_in_the_audit_log(env: Env) -> None:
    c, h = env.client, auth(env.tokens["tn-staff"])
    url = "/api/v1/incidents/inc-tn-1"
    assert c.post(f"{url}/resolve", headers=h, json={"note": "   "}).status_code == 422  # note required
    r = c.post(f"{url}/acknowledge", headers=h, json={"note": "Đang xử lý"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert c.post(f"{url}/acknowledge", headers=h).status_code == 409
    assert (
        c.post(f"{url}/assign", headers=h, json={"assignee": "qt-staff"}).status_code == 422
    )  # not in scope
    assert c.post(f"{url}/assign", headers=h, json={"assignee": "nobody"}).status_code == 422
    r = c.post(f"{url}/assign", headers=h, json={"assignee": "admin", "note": "cần quyền"})
    assert r.status_code == 200 and r.json()["assignee"] == "admin"
    r = c.post(f"{url}/resolve", headers=h, json={"note": "Đã xử lý xong"})
    assert r.status_code == 200 and r.json()["state"] == "resolved" and r.json()["resolved_at"]
    conflict = c.post(f"{url}/resolve", headers=h, json={"note": "again"})
    assert conflict.status_code == 409 and conflict.json()["error"] == "conflict"
    detail = c.get(url, headers=h).json()
    assert [e["action"] for e in detail["timeline"]] == ["opened", "acknowledged", "assigned", "resolved"]
    assert (
        detail["timeline"][-1]["actor"] == "tn-staff" and detail["timeline"][-1]["detail"] == "Đã xử lý xong"
    )
    assert [a["id"] for a in detail["alerts"]] == ["al-tn-1"]
    audit = c.get("/api/v1/audit?limit=50", headers=auth(env.tokens["admin"])).json()["items"]
    mine = [
        (a["action"], a["outcome"])
        for a in audit
        if a["actor"] == "tn-staff" and a["target"] == "incident:inc-tn-1"
    ]
    assert ("incident.acknowledge", "ok") in mine and ("incident.resolve", "ok") in mine
    assert ("incident.resolve", "failed") in mine
    entry = next(a for a in audit if a["action"] == "incident.resolve" and a["outcome"] == "ok")
    assert entry["site"] == "thong-nhat" and entry["ip"] and entry["at"]
    # A stale service write (it has not heard of the resolve) does not reopen it...
    from dataclasses import replace

    before = env.repo.incidents.get_incident("inc-tn-1")
    assert before is not None
    env.repo.incidents.upsert_incident(
        replace(before.incident, state="acknowledged", resolved_at=None, severity="emergency")
    )
    after = env.repo.incidents.get_incident("inc-tn-1")
    assert after is not None and after.incident.state == "resolved" and after.incident.severity == "emergency"
    # ...while a reopen by the incident manager does.
    env.repo.incidents.upsert_incident(
        replace(before.incident, state="open", resolved_at=None, acknowledged_at=None))
    reopened = env.repo.incidents.get_incident("inc-tn-1")
    assert (
        reopened is not None and reopened.incident.state == "open" and reopened.incident.resolved_at is None
    )


def test_audit_log_is_append_only_even_for_the_owner(env: Env, timescale: TimescaleServer) -> None:
    url = env.repo.url  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] > 0  # type: ignore[index]


# --- S5: JWT abuse ------------------------------------------------------------------------------


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(env: Env, user: str) -> dict[str, object]:
    token = env.tokens[user]
    return dict(jwt.decode(token, options={"verify_signature": False}))


def forged_tokens(env: Env) -> dict[str, str]:
    claims = _claims(env, "tn-staff")
    now = int(time.time())
    valid_sig = env.tokens["tn-staff"]
    header, _payload, sig = valid_sig.split(".")
    tampered_role = _b64({**claims, "role": "admin"})
    tampered_sites = _b64({**claims, "sites": ["quang-trung"]})
    return {
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({**claims, 'role': 'admin'})}.",
        "alg_none_upper": f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{_b64(claims)}.",
        "wrong_key": jwt.encode(claims, "another-secret-key-that-is-long-enough-000", algorithm="HS256"),
        "hs512": jwt.encode(claims, SECRET, algorithm="HS512"),
        "expired": jwt.encode(
            {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, SECRET, algorithm="HS256"
        ),
        "wrong_audience": jwt.encode({**claims, "aud": "grafana"}, SECRET, algorithm="HS256"),
        "wrong_issuer": jwt.encode({**claims, "iss": "someone"}, SECRET, algorithm="HS256"),
        "no_exp": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, SECRET, algorithm="HS256"),
        "refresh_as_access": jwt.encode({**claims, "typ": "refresh"}, SECRET, algorithm="HS256"),
        "tampered_role": f"{header}.{tampered_role}.{sig}",
        "tampered_sites": f"{header}.{tampered_sites}.{sig}",
        "signed_role_mismatch": jwt.encode({**claims, "role": "admin"}, SECRET, algorithm="HS256"),
        "signed_sites_mismatch": jwt.encode({**claims, "sites": ["quang-trung"]}, SECRET, algorithm="HS256"),
        "stale_version": jwt.encode({**claims, "ver": 99}, SECRET, algorithm="HS256"),
        "unknown_user": jwt.encode({**claims, "sub": "ghost"}, SECRET, algorithm="HS256"),
        "garbage": "not.a.jwt",
    }


def test_forged_and_tampered_tokens_are_refused(env: Env) -> None:
    for name, token in forged_tokens(env).items():
        for url in ("/api/v1/me", "/api/v1/incidents/inc-qt-1", "/api/v1/audit"):
            r = env.client.get(url, headers=auth(token))
            assert r.status_code == 401, (name, url, r.status_code, r.text)
    # And the genuine token still works.
    assert env.client.get("/api/v1/me", headers=auth(env.tokens["tn-staff"])).status_code == 200


def test_refresh_rotates_and_disabling_a_user_revokes_every_token(env: Env) -> None:
    c = env.client
    pair = c.post("/api/v1/auth/token", data={"username": "qt-staff", "password": PASSWORD}).json()
    r = c.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200
    fresh = r.json()["access_token"]
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]}).status_code == 401
    assert c.get("/api/v1/me", headers=auth(fresh)).json()["name"] == "qt-staff"
    from ops_center.security.users import set_disabled

    set_disabled(env.repo.users, name="qt-staff", disabled=True, actor="test")
    assert c.get("/api/v1/me", headers=auth(fresh)).status_code == 401
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    assert (
        c.post("/api/v1/auth/token", data={"username": "qt-staff", "password": PASSWORD}).status_code == 401
    )


# --- KPIs and readings ---------------------------------------------------------------------------


def test_site_overview_kpis_from_the_store(env: Env) -> None:
    ov = env.client.get("/api/v1/sites/thong-nhat/overview", headers=auth(env.tokens["tn-staff"])).json()
    # The last gateway's sensors (12 lamps of tn-gw-03) are silent for an hour.
    assert (ov["sensors_total"], ov["sensors_online"]) == (23, 11)
    # tn-gw-01: 9 of seqs 1..10 stored (0.9); tn-gw-02 and tn-gw-03: nothing in the window.
    assert ov["data_completeness_pct"] == pytest.approx(30.0)
    assert ov["open_incidents"] == {"info": 0, "warning": 0, "critical": 1, "emergency": 0, "total": 1}
    assert ov["dead_letters_today"] == 1
    # PM2.5 40 µg/m³ and PM10 60 µg/m³ for 12 h: sub-indices 80 and 55 (QĐ 1459 Bảng 2).
    assert ov["aqi"]["value"] == 80 and ov["aqi"]["dominant"] == "pm25"
    assert ov["aqi"]["category"] == {"vi": "Trung bình", "en": "Moderate"}
    qt = env.client.get("/api/v1/sites/quang-trung/overview", headers=auth(env.tokens["qt-staff"])).json()
    assert qt["aqi"]["value"] == 179 and qt["aqi"]["category"]["vi"] == "Xấu"  # PM2.5 120
    city = env.client.get("/api/v1/city/overview", headers=auth(env.tokens["leader"])).json()
    assert [s["site"] for s in city["sites"]] == ["thong-nhat", "quang-trung", "an-xa"]
    assert city["open_incidents"]["total"] == 3


def test_sensors_carry_latest_values_and_freshness(env: Env) -> None:
    sensors = env.client.get("/api/v1/sensors?site=thong-nhat", headers=auth(env.tokens["tn-staff"])).json()
    by_id = {s["id"]: s for s in sensors}
    assert by_id["tn-aq-01"]["online"] and {v["metric"] for v in by_id["tn-aq-01"]["values"]} >= {
        "pm25",
        "pm10",
    }
    assert by_id["tn-lamp-01"]["online"] is False and by_id["tn-lamp-01"]["values"][0]["fresh"] is False
    gws = env.client.get("/api/v1/gateways", headers=auth(env.tokens["tn-staff"])).json()
    assert {g["id"]: g["state"] for g in gws} == {
        "tn-gw-01": "online",
        "tn-gw-02": "unknown",
        "tn-gw-03": "unknown",
    }


def test_readings_raw_rollup_and_bounds(env: Env) -> None:
    c, h = env.client, auth(env.tokens["tn-staff"])
    now = env.seed.now
    fmt: Callable[[datetime], str] = lambda t: t.astimezone(UTC).isoformat().replace("+00:00", "Z")  # noqa: E731
    q = f"/api/v1/readings?sensor=tn-aq-01&metric=no2&start={fmt(now - timedelta(hours=1))}&end={fmt(now)}"
    raw = c.get(q, headers=h).json()
    assert (
        raw["source"] == "readings" and raw["bucket"] == "raw" and len(raw["points"]) == 61
    )  # + the seed's reading
    q = (
        f"/api/v1/readings?sensor=tn-aq-01&metric=pm25&start={fmt(now - timedelta(hours=2, minutes=1))}"
        f"&end={fmt(now)}&bucket=15m"
    )
    quarter = c.get(q, headers=h).json()
    assert quarter["source"] == "readings_1m" and sum(p["count"] for p in quarter["points"]) == 120
    assert sum(p["value"] * p["count"] for p in quarter["points"]) == pytest.approx(sum(range(1, 121)))
    # 120 minutes of readings span 8 quarter-hours when the seed's clock sits on a quarter
    # boundary (e.g. 09:30), 9 or 10 otherwise.
    assert len(quarter["points"]) in (8, 9, 10)
    hourly = c.get(q.replace("bucket=15m", "bucket=1h"), headers=h).json()
    assert hourly["source"] == "readings_1h" and all(p["value"] == 40.0 for p in hourly["points"])
    q = f"/api/v1/readings?sensor=tn-aq-01&metric=pm25&start={fmt(now - timedelta(days=30))}&end={fmt(now)}"
    auto = c.get(q, headers=h).json()
    assert auto["source"] == "readings_1h" and auto["bucket"] in ("1h", "2h", "3h")
    # S8: unbounded or too large queries are 422.
    for bad in (
        "/api/v1/readings?sensor=tn-aq-01&metric=pm25",
        f"/api/v1/readings?sensor=tn-aq-01&metric=pm25&start={fmt(now)}",
        f"/api/v1/readings?sensor=tn-aq-01&metric=pm25&start={fmt(now)}&end={fmt(now - timedelta(hours=1))}",
        f"/api/v1/readings?sensor=tn-aq-01&metric=pm25&start={fmt(now - timedelta(days=3000))}"
        f"&end={fmt(now)}",
        f"/api/v1/readings?sensor=tn-aq-01&metric=pm25&start={fmt(now - timedelta(days=30))}&end={fmt(now)}"
        "&bucket=1m",
        f"/api/v1/readings?sensor=tn-aq-01&metric=pm25&start={fmt(now - timedelta(days=1))}&end={fmt(now)}"
        "&bucket=7x",
        f"/api/v1/readings?sensor=tn-aq-01&metric=lamp_power_w&start={fmt(now - timedelta(hours=1))}"
        f"&end={fmt(now)}",
        "/api/v1/alerts?limit=100000",
        "/api/v1/incidents?limit=0",
        "/api/v1/alerts?offset=-1",
    ):
        r = c.get(bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"]["vi"] and r.json()["detail"]["en"]
