"""Issue #10: sessions and the stream ticket, on SQLite and on PostgreSQL.

- Exchanging a refresh token gives a new pair; the old refresh token is spent.
- Presenting a spent refresh token again (a thief's copy, or the user's own after a thief
  used it) revokes the whole session: the newest refresh token and the access tokens too.
- ``POST /api/v1/auth/logout`` revokes the session the same way.
- The live stream takes a single-use ticket (``POST /api/v1/stream/ticket``), never a token in
  the URL; a ticket works once and expires after 30 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from ops_center.adapters.sessions import STREAM_TICKET_TTL_S
from tests.servers.timescale import TimescaleServer
from tests.support.api import PASSWORD, Env, Server, auth, pg_env, sqlite_env

pytestmark = pytest.mark.integration

V1 = "/api/v1"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    over: dict[str, Any] = {"login_attempts_per_ip": 1000, "stream_keepalive_s": 0.2}
    if request.param == "sqlite":
        yield from sqlite_env(tmp_path_factory.mktemp("sessions") / "ops.db", **over)
    else:
        timescale: TimescaleServer = request.getfixturevalue("timescale")
        timescale.ensure_running()
        yield from pg_env(timescale.fresh_db("sessions"), **over)


def login(env: Env, user: str = "qt-staff") -> dict[str, Any]:
    r = env.client.post(f"{V1}/auth/token", data={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    pair: dict[str, Any] = r.json()
    return pair


def refresh(env: Env, token: str) -> httpx.Response:
    return env.client.post(f"{V1}/auth/refresh", json={"refresh_token": token})


def me(env: Env, access: str) -> int:
    return env.client.get(f"{V1}/me", headers=auth(access)).status_code


def test_a_refresh_gives_a_new_pair_and_spends_the_old_refresh_token(env: Env) -> None:
    first = login(env)
    r = refresh(env, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert me(env, second["access_token"]) == 200
    third = refresh(env, second["refresh_token"])
    assert third.status_code == 200  # the new one works, and rotates again


def test_reusing_a_spent_refresh_token_revokes_the_whole_session(env: Env) -> None:
    other = login(env)  # another session of the same user is not affected
    stolen = login(env)
    rotated = refresh(env, stolen["refresh_token"]).json()  # the legitimate exchange
    assert me(env, rotated["access_token"]) == 200
    # The thief (or the user) presents the spent token: refused, and the session is revoked.
    r = refresh(env, stolen["refresh_token"])
    assert r.status_code == 401
    assert refresh(env, rotated["refresh_token"]).status_code == 401  # the newest one too
    assert me(env, rotated["access_token"]) == 401  # principal_cache_s is 0 in these tests
    assert me(env, stolen["access_token"]) == 401
    assert me(env, other["access_token"]) == 200
    assert refresh(env, other["refresh_token"]).status_code == 200
    audit = env.repo.users.audit_entries(200, 0).items
    assert any(a.action == "token_refresh" and a.outcome == "denied" and "reused" in (a.detail or "")
               for a in audit)


def test_logout_revokes_the_session_and_only_that_one(env: Env) -> None:
    keep = login(env, "ax-manager")
    pair = login(env, "ax-manager")
    r = env.client.post(f"{V1}/auth/logout", headers=auth(pair["access_token"]))
    assert r.status_code == 200 and r.json() == {"revoked": True}, r.text
    assert me(env, pair["access_token"]) == 401
    assert refresh(env, pair["refresh_token"]).status_code == 401
    assert env.client.post(f"{V1}/auth/logout", headers=auth(pair["access_token"])).status_code == 401
    assert me(env, keep["access_token"]) == 200
    assert env.client.post(f"{V1}/auth/logout").status_code == 401  # no token: nothing to end


def test_logout_takes_effect_within_the_principal_cache(env: Env) -> None:
    """With the user rows cached (``principal_cache_s``), the process that served the logout
    refuses the session at once; the bound covers every other process."""
    state = env.app.state.smartward
    saved = state.users.ttl_s
    state.users.ttl_s = 60.0
    try:
        pair = login(env, "leader")
        assert me(env, pair["access_token"]) == 200  # now cached
        assert env.client.post(f"{V1}/auth/logout", headers=auth(pair["access_token"])).status_code == 200
        assert me(env, pair["access_token"]) == 401
    finally:
        state.users.ttl_s = saved


def test_a_refresh_token_without_a_session_is_refused(env: Env) -> None:
    state = env.app.state.smartward
    legacy = state.tokens.issue("refresh", user="qt-staff", role="ward_staff", sites=("quang-trung",),
                                version=0).token
    assert refresh(env, legacy).status_code == 401


# --- the stream ticket -----------------------------------------------------------------------------


def ticket(env: Env, access: str) -> str:
    r = env.client.post(f"{V1}/stream/ticket", headers=auth(access))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_in"] == STREAM_TICKET_TTL_S
    value: str = body["ticket"]
    return value


async def first_block(url: str, params: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{url}{V1}/stream", params=params, headers=headers) as r,
    ):
        if r.status_code != 200:
            await r.aread()
            return r.status_code, r.text
        async for chunk in r.aiter_text():
            return r.status_code, chunk
    return r.status_code, ""


def test_a_stream_ticket_opens_the_stream_once(env: Env) -> None:
    pair = login(env, "tn-staff")
    with Server(env) as srv:
        t = ticket(env, pair["access_token"])
        status, text = asyncio.run(first_block(srv.url, {"ticket": t}))
        assert status == 200 and text.startswith("retry:")
        status, text = asyncio.run(first_block(srv.url, {"ticket": t}))
        assert status == 401, text  # used
        assert asyncio.run(first_block(srv.url, {"ticket": "x" * 43}))[0] == 401  # unknown
        # The token itself is no longer accepted in the URL (only as a header).
        assert asyncio.run(first_block(srv.url, {"access_token": pair["access_token"]}))[0] == 401
        assert asyncio.run(first_block(srv.url, headers=auth(pair["access_token"])))[0] == 200


def test_a_stream_ticket_expires_and_dies_with_its_session(env: Env) -> None:
    state = env.app.state.smartward
    pair = login(env, "tn-staff")
    t = ticket(env, pair["access_token"])
    real_clock = state.clock
    state.clock = lambda: real_clock() + timedelta(seconds=STREAM_TICKET_TTL_S + 1)
    try:
        r = env.client.get(f"{V1}/stream", params={"ticket": t})
        assert r.status_code == 401
    finally:
        state.clock = real_clock
    t = ticket(env, pair["access_token"])
    assert env.client.post(f"{V1}/auth/logout", headers=auth(pair["access_token"])).status_code == 200
    assert env.client.get(f"{V1}/stream", params={"ticket": t}).status_code == 401
    assert env.client.post(f"{V1}/stream/ticket").status_code == 401


async def events_until(url: str, params: dict[str, str], want: int, deadline_s: float = 5) -> list[str]:
    """The ``incident`` data lines of a ticketed stream, until ``want`` of them (or ``resync``)."""
    got: list[str] = []
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{url}{V1}/stream", params=params) as r,
    ):
        assert r.status_code == 200
        buf = ""
        async with asyncio.timeout(deadline_s):
            async for chunk in r.aiter_text():
                buf += chunk
                while "\n\n" in buf:
                    block, buf = buf.split("\n\n", 1)
                    if "event: resync" in block:
                        return [*got, "resync"]
                    if "event: incident" in block:
                        got.append(block.split("data: ", 1)[1])
                if len(got) >= want:
                    return got
    return got


def test_a_reconnect_with_a_fresh_ticket_resumes_after_the_last_event(env: Env) -> None:
    """The screen reconnects with a new ticket and ``last_event_id`` (a new EventSource sends
    no Last-Event-ID header): only what it missed, in its scope, is replayed."""
    pair = login(env, "tn-staff")
    with Server(env) as srv:
        first = srv.feed.publish("incident", "thong-nhat", {"n": 1})
        srv.feed.publish("incident", "quang-trung", {"n": 2})
        srv.feed.publish("incident", "thong-nhat", {"n": 3})
        params = {"ticket": ticket(env, pair["access_token"]), "last_event_id": first.id}
        got = asyncio.run(events_until(srv.url, params, 1))
        assert len(got) == 1 and '"n": 3' in got[0], got
        # A last_event_id from another boot of the feed: resync, as with the header.
        params = {"ticket": ticket(env, pair["access_token"]), "last_event_id": "deadbeef-1"}
        assert asyncio.run(events_until(srv.url, params, 1)) == ["resync"]
