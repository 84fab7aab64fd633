"""``/api/v1/users`` (issue #14): admins list, add, disable, enable users and set passwords,
with the CLI's store functions; every other role gets 403; every change is audited; a disabled
user's tokens stop working (at once here, within ``principal_cache_s`` from another process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops_center.api.routes.stream import RECHECK_MIN_S
from ops_center.api.schemas import PASSWORD_MIN
from ops_center.security.passwords import MIN_PASSWORD_CHARS
from ops_center.security.users import set_disabled
from tests.support.api import PASSWORD, USERS, Env, Server, auth, login, sqlite_env

pytestmark = pytest.mark.integration

V1 = "/api/v1"
NEW_PASSWORD = "mật-khẩu-mới-2026"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path / "users.db")


def admin(env: Env) -> dict[str, str]:
    return auth(env.tokens["admin"])


def new_user(**over: object) -> dict[str, object]:
    return {"name": "tn-moi", "role": "ward_staff", "sites": ["thong-nhat"], "password": NEW_PASSWORD, **over}


def audit(env: Env) -> list[tuple[str, str, str, str | None]]:
    return [(a.actor, a.action, a.outcome, a.target) for a in env.repo.users.audit_entries(500, 0).items]


def test_the_schema_and_the_policy_agree_on_the_shortest_password() -> None:
    assert PASSWORD_MIN == MIN_PASSWORD_CHARS


def test_admin_lists_users_without_their_hashes(env: Env) -> None:
    r = env.client.get(f"{V1}/users", headers=admin(env))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(USERS)
    by_name = {u["name"]: u for u in body["items"]}
    assert by_name["tn-staff"]["role"] == "ward_staff" and by_name["tn-staff"]["sites"] == ["thong-nhat"]
    assert by_name["leader"]["sites"] == [] and not by_name["leader"]["disabled"]
    assert by_name["admin"]["created"]
    assert "argon2" not in r.text and "password" not in r.text
    page = env.client.get(f"{V1}/users?limit=2&offset=1", headers=admin(env)).json()
    assert [u["name"] for u in page["items"]] == [u["name"] for u in body["items"]][1:3]


@pytest.mark.parametrize("user", [u for u, (role, _) in USERS.items() if role != "admin"])
def test_every_other_role_is_refused_every_route(env: Env, user: str) -> None:
    h = auth(env.tokens[user])
    c = env.client
    answers = [
        c.get(f"{V1}/users", headers=h),
        c.post(f"{V1}/users", headers=h, json=new_user(name=f"by-{user}")),
        c.post(f"{V1}/users/tn-staff/disable", headers=h),
        c.post(f"{V1}/users/tn-staff/enable", headers=h),
        c.post(f"{V1}/users/{user}/password", headers=h, json={"password": NEW_PASSWORD}),
    ]
    assert [r.status_code for r in answers] == [403] * 5, [r.text for r in answers]
    assert all(r.json()["error"] == "forbidden" for r in answers)
    assert env.repo.users.get_user(f"by-{user}") is None
    assert not env.repo.users.get_user("tn-staff").disabled  # type: ignore[union-attr]
    denied = [a for a in audit(env) if a[0] == user and a[2] == "denied"]
    assert len(denied) == 5 and {a[1] for a in denied} == {"denied:admin"}


def test_admin_adds_a_ward_staff_who_can_log_in_and_is_audited(env: Env) -> None:
    r = env.client.post(f"{V1}/users", headers=admin(env), json=new_user())
    assert r.status_code == 201, r.text
    assert r.json() | {"created": None, "updated": None} == {
        "name": "tn-moi", "role": "ward_staff", "sites": ["thong-nhat"], "disabled": False,
        "created": None, "updated": None,
    }
    me = env.client.get(f"{V1}/me", headers=auth(login(env.client, "tn-moi", NEW_PASSWORD))).json()
    assert me["role"] == "ward_staff" and me["sites"] == ["thong-nhat"]
    entry = next(a for a in env.repo.users.audit_entries(500, 0).items if a.action == "user.add"
                 and a.target == "user:tn-moi")
    assert entry.actor == "admin" and entry.outcome == "ok" and entry.ip  # the admin's address
    assert entry.detail == "role=ward_staff sites=thong-nhat"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (new_user(name="tn-staff"), "user_exists"),
        (new_user(sites=["no-such-site"]), "user_unknown_site"),
        (new_user(sites=[]), "user_sites_required"),
        (new_user(role="cluster_manager", sites=[]), "user_sites_required"),
        (new_user(password=" " + NEW_PASSWORD), "password_policy"),
        (new_user(password="ngắn-quá"), "validation"),
        (new_user(role="superuser"), "validation"),
        (new_user(name="Tên Có Dấu"), "validation"),
        (new_user(password="x" * 257), "validation"),
        (new_user(password="mật\x00khẩu-dài-đủ"), "validation"),
        (new_user(extra=1), "validation"),
    ],
)
def test_bad_users_are_refused_with_a_clear_error(env: Env, body: dict[str, object], code: str) -> None:
    r = env.client.post(f"{V1}/users", headers=admin(env), json=body)
    assert r.status_code == (409 if code == "user_exists" else 422), r.text
    err = r.json()
    assert err["error"] == code and err["detail"]["vi"] and err["detail"]["en"]
    assert "{" not in err["detail"]["vi"] + err["detail"]["en"]  # every placeholder filled
    assert len(env.repo.users.list_users()) == len(USERS)


def test_a_global_role_ignores_sites(env: Env) -> None:
    r = env.client.post(f"{V1}/users", headers=admin(env), json=new_user(name="lanh-dao", role="city_leader"))
    assert r.status_code == 201 and r.json()["sites"] == []


def test_disable_stops_the_users_tokens_at_once_and_enable_lets_them_log_in_again(env: Env) -> None:
    c, h = env.client, admin(env)
    staff = auth(env.tokens["tn-staff"])
    assert c.get(f"{V1}/me", headers=staff).status_code == 200
    r = c.post(f"{V1}/users/tn-staff/disable", headers=h)
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert c.get(f"{V1}/me", headers=staff).status_code == 401
    assert c.post(f"{V1}/auth/token", data={"username": "tn-staff", "password": PASSWORD}).status_code == 401
    r = c.post(f"{V1}/users/tn-staff/enable", headers=h)
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert c.get(f"{V1}/me", headers=staff).status_code == 401  # the old token stays spent
    assert c.get(f"{V1}/me", headers=auth(login(c, "tn-staff"))).status_code == 200
    done = [(a[1], a[2]) for a in audit(env) if a[0] == "admin" and a[3] == "user:tn-staff"]
    assert ("user.disable", "ok") in done and ("user.enable", "ok") in done


def test_a_password_set_by_an_admin_replaces_the_old_one(env: Env) -> None:
    c = env.client
    staff = auth(env.tokens["qt-staff"])
    r = c.post(f"{V1}/users/qt-staff/password", headers=admin(env), json={"password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    assert c.get(f"{V1}/me", headers=staff).status_code == 401
    assert c.post(f"{V1}/auth/token", data={"username": "qt-staff", "password": PASSWORD}).status_code == 401
    login(c, "qt-staff", NEW_PASSWORD)
    assert ("admin", "user.passwd", "ok", "user:qt-staff") in audit(env)
    r = c.post(f"{V1}/users/qt-staff/password", headers=admin(env), json={"password": "khoảng-trắng-cuối "})
    assert r.status_code == 422 and r.json()["error"] == "password_policy"


def test_unknown_users_are_404_and_an_admin_may_not_disable_themself(env: Env) -> None:
    c, h = env.client, admin(env)
    for path, body in (("disable", None), ("enable", None), ("password", {"password": NEW_PASSWORD})):
        r = c.post(f"{V1}/users/khong-co/{path}", headers=h, json=body)
        assert r.status_code == 404 and r.json()["error"] == "user_not_found", r.text
    assert c.post(f"{V1}/users/Bad%20Name/disable", headers=h).status_code == 422
    r = c.post(f"{V1}/users/admin/disable", headers=h)
    assert r.status_code == 409 and r.json()["error"] == "user_self_disable"
    assert c.get(f"{V1}/me", headers=h).status_code == 200
    assert ("admin", "user.disable", "failed", "user:admin") in audit(env)


def test_a_user_disabled_by_another_process_is_refused_within_the_principal_cache(tmp_path: Path) -> None:
    """``smartward users disable`` writes the row from another process: nothing tells the API,
    which re-reads the row at most ``principal_cache_s`` after it last did."""
    bound = 0.5
    for env in sqlite_env(tmp_path / "cache.db", principal_cache_s=bound):
        staff = auth(env.tokens["tn-staff"])
        assert env.client.get(f"{V1}/me", headers=staff).status_code == 200  # the row is remembered
        set_disabled(env.repo.users, name="tn-staff", disabled=True, actor="cli:test")
        changed = time.monotonic()
        deadline = changed + bound + 2.0  # generous for a loaded machine; the bound is checked below
        while env.client.get(f"{V1}/me", headers=staff).status_code == 200:
            assert time.monotonic() < deadline, "a disabled user's token still works"
        # Refused no later than the bound (plus the time of one request on a loaded machine).
        assert time.monotonic() - changed < bound + 1.0


def test_an_open_stream_of_a_user_who_is_disabled_ends(env: Env) -> None:
    """The live stream outlives the request that authorised it: it re-checks the user row, and
    a disabled user's stream ends (``reauth``) within ``max(principal_cache_s, 1 s)``."""
    with Server(env) as srv:

        async def scenario() -> tuple[str, float]:
            async with (
                httpx.AsyncClient(timeout=10) as client,
                client.stream("GET", f"{srv.url}{V1}/stream", headers=auth(env.tokens["tn-staff"])) as r,
            ):
                assert r.status_code == 200
                done = await client.post(f"{srv.url}{V1}/users/tn-staff/disable", headers=admin(env))
                assert done.status_code == 200, done.text
                changed = time.monotonic()
                text = "".join([chunk async for chunk in r.aiter_text()])  # until the server ends it
                return text, time.monotonic() - changed

        text, took = asyncio.run(asyncio.wait_for(scenario(), timeout=RECHECK_MIN_S + 8))
        assert 'event: reauth\ndata: {"reason": "user changed"}' in text, text[-300:]
        assert took < RECHECK_MIN_S + 1.5
