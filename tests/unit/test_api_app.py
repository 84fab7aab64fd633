"""The API on the embedded store (SQLite): abuse limits (S8), one error format, health and
metrics, the OpenAPI schema, and the users command."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.registry import load_registry
from ops_center.adapters.sqlite import SqliteOpsRepository
from ops_center.feed import Feed
from ops_center.security.users import create_demo_users
from ops_center.users_cli import main as users_main
from tests.support.api import PASSWORD, Env, auth, build_app, sqlite_env

REG = load_registry()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(
        tmp_path / "app.db", login_attempts_per_ip=50, login_failures_per_user=3, max_body_bytes=2048
    )


def test_login_brute_force_gets_429_with_retry_after(env: Env) -> None:
    c = env.client
    for _ in range(3):
        r = c.post("/api/v1/auth/token", data={"username": "tn-staff", "password": "wrong-password"})
        assert r.status_code == 401 and r.json()["error"] == "bad_credentials"
    r = c.post("/api/v1/auth/token", data={"username": "tn-staff", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert r.json()["detail"]["vi"].startswith("Quá nhiều")
    # Unknown users fail the same way, and are limited too.
    r = c.post("/api/v1/auth/token", data={"username": "ghost", "password": "whatever-123"})
    assert r.status_code == 401
    audit = env.repo.users.audit_entries(100, 0).items
    assert sum(1 for a in audit if a.action == "login" and a.outcome == "failed") >= 4
    assert any(a.action == "login" and a.outcome == "denied" for a in audit)


def test_oversized_bodies_get_413_declared_or_chunked(env: Env) -> None:
    c, h = env.client, auth(env.tokens["tn-staff"])
    big = {"note": "x" * 5000}
    r = c.post("/api/v1/incidents/inc-tn-1/notes", headers=h, json=big)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        yield b'{"note": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = c.post(
        "/api/v1/incidents/inc-tn-1/notes", headers=h | {"content-type": "application/json"}, content=chunks()
    )
    assert r.status_code == 413
    assert c.post("/api/v1/incidents/inc-tn-1/notes", headers=h, json={"note": "ok"}).status_code == 200


def test_every_error_has_the_catalog_shape(env: Env) -> None:
    c, h = env.client, auth(env.tokens["admin"])
    for method, url, status in (
        ("GET", "/api/v1/nope", 404),
        ("DELETE", "/api/v1/me", 405),
        ("GET", "/api/v1/incidents/does-not-exist", 404),
        ("GET", "/api/v1/alerts?state=bogus", 422),
        ("GET", "/api/v1/me", 200),
    ):
        r = c.request(method, url, headers=h)
        assert r.status_code == status, (url, r.text)
        if status >= 400:
            body = r.json()
            assert (
                set(body) <= {"error", "detail", "fields"} and body["detail"]["vi"] and body["detail"]["en"]
            )


def test_health_readiness_and_metrics(tmp_path: Path, env: Env) -> None:
    assert env.client.get("/healthz").json() == {"status": "ok"}
    assert env.client.get("/readyz").json() == {"ready": True, "checks": {"store": True}}
    metrics = env.client.get("/metrics").text
    assert "smartward_api_requests_total" in metrics and "smartward_api_stream_clients" in metrics
    from fastapi.testclient import TestClient

    app = build_app(env.repo, Feed())
    app.state.smartward.readiness = lambda: {"store": True, "broker": False}
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"] == {"store": True, "broker": False}


def test_openapi_describes_every_answer() -> None:
    repo = SqliteOpsRepository(":memory:")
    schema = build_app(repo).openapi()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            # The success answer: 200, or 201/202 for a POST that creates or accepts.
            ok = next((op["responses"][c] for c in ("200", "201", "202") if c in op["responses"]), None)
            assert ok is not None, (method, path)
            content = ok.get("content", {})
            assert content, (method, path)
            for media in content.values():
                assert media.get("schema"), (method, path)  # never an untyped (Any) answer
            if path.startswith("/api/v1/") and path != "/api/v1/auth/token":
                assert "422" not in op["responses"] or "ErrorBody" in str(op["responses"]["422"]), path


def test_users_command_add_list_disable_passwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "users.db"
    monkeypatch.setenv("SMARTWARD_DB_URL", f"sqlite:///{db}")
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-1\n"))
    assert users_main(["add", "lan", "--role", "ward_staff", "--site", "thong-nhat", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-1\n"))
    assert users_main(["add", "lan", "--role", "ward_staff", "--site", "thong-nhat", "--password-stdin"]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-1\n"))
    assert users_main(["add", "x", "--role", "ward_staff", "--password-stdin"]) == 1  # needs a site
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-1\n"))
    assert users_main(["add", "y", "--role", "ward_staff", "--site", "nowhere", "--password-stdin"]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert users_main(["add", "z", "--role", "admin", "--password-stdin"]) == 1
    assert users_main(["disable", "lan"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("another-long-password\n"))
    assert users_main(["passwd", "lan", "--password-stdin"]) == 0
    assert users_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "lan" in out and "ward_staff" in out and "disabled" in out
    repo = SqliteOpsRepository(db)
    user = repo.users.get_user("lan")
    assert (
        user is not None
        and user.disabled
        and user.token_version == 2
        and user.password_hash.startswith("$argon2")
    )
    actions = [a.action for a in repo.users.audit_entries(50, 0).items]
    assert {"user.add", "user.disable", "user.passwd"} <= set(actions)
    repo.close()


def test_demo_users_one_per_role(tmp_path: Path) -> None:
    repo = SqliteOpsRepository(tmp_path / "demo.db")
    repo.migrate()
    created = create_demo_users(repo.users, REG)
    roles = {u.name: (u.role, u.sites) for u in repo.users.list_users()}
    assert roles == {
        "demo-ward": ("ward_staff", ("thong-nhat",)),
        "demo-cluster": ("cluster_manager", ("an-xa",)),
        "demo-leader": ("city_leader", ()),
        "demo-admin": ("admin", ()),
    }
    assert set(created) == set(roles) and create_demo_users(repo.users, REG) == {}
    repo.close()


def test_catalog_names_every_kind_and_metric_vietnamese_first(env: Env) -> None:
    from contract.catalog import METRICS, SENSOR_KINDS

    c = env.client
    assert c.get("/api/v1/catalog").status_code == 401
    body = c.get("/api/v1/catalog", headers=auth(env.tokens["tn-staff"])).json()
    kinds = {k["code"]: k for k in body["kinds"]}
    metrics = {m["code"]: m for m in body["metrics"]}
    assert set(kinds) == set(SENSOR_KINDS) and set(metrics) == set(METRICS)
    air = SENSOR_KINDS["air_quality"]
    assert kinds["air_quality"]["name"] == {"vi": "Trạm quan trắc không khí", "en": air.name_en}
    assert metrics["pm25"]["unit"] == "µg/m³" and metrics["pm25"]["name"]["vi"] == "Bụi PM2.5"
    assert kinds["air_quality"]["metrics"] == list(SENSOR_KINDS["air_quality"].metrics)
