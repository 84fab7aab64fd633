"""``smartward dashboards push`` against a recorded contract of Grafana's HTTP API
(tests/grafana_contract.py: a local HTTP server with Grafana's documented endpoints, status
codes and body shapes, checking the Bearer token). No Grafana server runs here."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.registry import load_registry
from dashboards.cli import main
from dashboards.definitions import folders
from dashboards.export import export, plan_orgs
from dashboards.model import render
from dashboards.push import (
    GrafanaClient,
    GrafanaConflict,
    GrafanaForbidden,
    GrafanaResponseError,
    GrafanaUnauthorized,
    GrafanaUnreachable,
    push,
)
from dashboards.settings import DashboardsSettings
from tests.grafana_contract import grafana

TOKEN = "glsa_test_editor_token_0123456789"
VIEWER = "glsa_test_viewer_token_0123456789"
TOKENS = {TOKEN: "Admin", VIEWER: "Viewer"}


def settings(url: str, token: str | None = TOKEN) -> DashboardsSettings:
    return DashboardsSettings(grafana_url=url, grafana_token=token, grafana_timeout_s=5)


def expected() -> dict[str, tuple[str, dict[str, Any]]]:
    return {d.uid: (f.uid, render(d)) for f in folders() for d in f.dashboards}


def test_push_creates_folders_and_dashboards_then_is_idempotent() -> None:
    with grafana(TOKENS) as (url, state):
        first = push(settings(url))
        assert {f.uid: f.title for f in folders()} == {u: f["title"] for u, f in state.folders.items()}
        want = expected()
        assert set(state.dashboards) == set(want)
        for uid, (folder_uid, model) in want.items():
            stored = state.dashboards[uid]
            assert stored["folderUid"] == folder_uid
            assert stored["dashboard"]["panels"] == model["panels"]
            assert stored["dashboard"]["templating"] == model["templating"]
            assert stored["version"] == 1
        assert all(p.action == "created" for p in first)
        # Every call but the health check carried the token.
        assert all(auth == f"Bearer {TOKEN}" for m, p, auth in state.requests if p != "/api/health")
        # grafana-client calls only the documented endpoints of the recorded contract.
        documented = re.compile(r"GET /api/health|GET /api/folders/[\w-]+|POST /api/folders"
                                r"|PUT /api/folders/[\w-]+|POST /api/dashboards/db")
        assert all(documented.fullmatch(f"{m} {p}") for m, p, _ in state.requests), state.requests

        n_folders, ids = len(state.folders), {u: d["id"] for u, d in state.dashboards.items()}
        before = len(state.requests)
        second = push(settings(url))
        assert len(state.folders) == n_folders and {u: d["id"] for u, d in state.dashboards.items()} == ids
        assert [p.uid for p in second] == [p.uid for p in first]
        assert {p.action for p in second if p.kind == "folder"} == {"unchanged"}
        assert {p.action for p in second if p.kind == "dashboard"} == {"updated"}
        assert all(d["version"] == 2 for d in state.dashboards.values())
        # The second push creates nothing: no folder POST, only the overwriting dashboard saves.
        assert not any(m == "POST" and p == "/api/folders" for m, p, _ in state.requests[before:])


def test_pushed_dashboards_name_the_data_source_each_organisation_provisions(tmp_path: Path) -> None:
    """A service-account token belongs to one organisation: pushing the same models into a
    ward's organisation and into the city's works because each provisions the one uid."""
    export(tmp_path, orgs=plan_orgs(["thong-nhat=2", "an-xa=4"], 5, load_registry()))
    provisioned = set()
    for path in (tmp_path / "provisioning" / "datasources").glob("*.yaml"):
        (ds,) = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
        provisioned.add((ds["orgId"], ds["uid"]))
    assert {org for org, _ in provisioned} == {2, 4, 5}
    with grafana(TOKENS) as (url, state):
        push(settings(url))
        used = {t["datasource"]["uid"] for d in state.dashboards.values()
                for p in d["dashboard"]["panels"] for t in [p, *p["targets"]]}
    assert used and {(org, uid) for org in (2, 4, 5) for uid in used} == provisioned


def test_push_renames_a_folder_someone_renamed_back() -> None:
    with grafana(TOKENS) as (url, state):
        push(settings(url))
        uid = folders()[0].uid
        state.folders[uid]["title"] = "Renamed by hand"
        done = push(settings(url))
        assert next(p for p in done if p.uid == uid).action == "updated"
        assert state.folders[uid]["title"] == folders()[0].title


def test_search_lists_what_was_pushed() -> None:
    import httpx

    with grafana(TOKENS) as (url, _state):
        push(settings(url))
        for folder in folders():
            hits = httpx.get(f"{url}/api/search", params={"type": "dash-db", "folderUIDs": folder.uid},
                             headers={"Authorization": f"Bearer {TOKEN}"}).json()
            assert {h["uid"] for h in hits} == {d.uid for d in folder.dashboards}
            assert all(h["folderUid"] == folder.uid and h["type"] == "dash-db" for h in hits)


def test_bad_or_missing_token_is_a_clear_401() -> None:
    with grafana(TOKENS) as (url, state):
        with pytest.raises(GrafanaUnauthorized) as err:
            push(settings(url, "glsa_wrong"))
        assert "401" in str(err.value) and "SMARTWARD_GRAFANA_TOKEN" in str(err.value)
        assert str(err.value).startswith("Grafana từ chối")
        with pytest.raises(GrafanaUnauthorized, match="Thiếu SMARTWARD_GRAFANA_TOKEN"):
            push(settings(url, None))
        assert not state.folders and not state.dashboards


def test_viewer_token_is_a_clear_403() -> None:
    with grafana(TOKENS) as (url, state), pytest.raises(GrafanaForbidden, match="403"):
        push(settings(url, VIEWER))
    assert not state.folders


@pytest.mark.parametrize(("status", "words"), [("version-mismatch", "lệch phiên bản"),
                                               ("name-exists", "cùng tên")])
def test_precondition_failed_names_the_reason(status: str, words: str) -> None:
    with grafana(TOKENS) as (url, state):
        state.fail_next[("POST", "/api/dashboards/db")] = (412, {"message": "x", "status": status})
        with pytest.raises(GrafanaConflict, match="412") as err:
            push(settings(url))
        assert words in str(err.value)


def test_a_dashboard_with_the_same_title_under_another_uid_is_refused_by_the_contract() -> None:
    with grafana(TOKENS) as (url, state):
        push(settings(url))
        d = next(iter(state.dashboards.values()))
        state.dashboards["hand-made"] = {**d, "id": 999, "dashboard": {**d["dashboard"], "uid": "hand-made"}}
        with pytest.raises(GrafanaConflict, match="cùng tên"):
            push(settings(url))


def test_server_errors_are_reported() -> None:
    with grafana(TOKENS) as (url, state):
        state.fail_next[("POST", "/api/folders")] = (500, {"message": "database is locked"})
        with pytest.raises(GrafanaResponseError, match=r"500.*database is locked"):
            push(settings(url))


def test_unreachable_grafana() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(GrafanaUnreachable, match="Không kết nối được Grafana"):
            push(settings(f"http://127.0.0.1:{port}"))


def test_cli_push_exit_codes_and_messages(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with grafana(TOKENS) as (url, state):
        monkeypatch.setenv("SMARTWARD_GRAFANA_URL", url)
        monkeypatch.setenv("SMARTWARD_GRAFANA_TOKEN", TOKEN)
        assert main(["push"]) == 0
        out = capsys.readouterr().out
        assert "Đã đẩy" in out and "smartward-city-overview" in out
        assert len(state.dashboards) == sum(len(f.dashboards) for f in folders())
        monkeypatch.setenv("SMARTWARD_GRAFANA_TOKEN", "nope")
        assert main(["push"]) == 1
        err = capsys.readouterr().err
        assert "401" in err and TOKEN not in err and "nope" not in err


@pytest.mark.parametrize(("url", "api"), [
    ("http://127.0.0.1:3000", "http://127.0.0.1:3000/api"),
    ("http://127.0.0.1:3000/", "http://127.0.0.1:3000/api"),
    ("https://city.example/grafana", "https://city.example/grafana/api"),
    ("https://city.example/grafana/", "https://city.example/grafana/api"),
])
def test_a_grafana_under_a_path_is_called_under_that_path(url: str, api: str) -> None:
    with GrafanaClient(url, TOKEN) as client:
        assert client.api_url == api


def test_a_server_that_is_not_grafana_is_named_not_mistaken_for_unreachable() -> None:
    """A reverse proxy's login page (200 text/html) or a 200 with a body that is not JSON."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotGrafana(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>login</html>"
            self.send_response(200)
            self.send_header("Content-Type", self.server.content_type)  # type: ignore[attr-defined]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://sa:hunter2@127.0.0.1:{server.server_address[1]}"
        for content_type in ("text/html", "application/json"):
            server.content_type = content_type  # type: ignore[attr-defined]
            with pytest.raises(GrafanaResponseError, match="không phải JSON") as err:
                push(settings(url))
            assert "hunter2" not in str(err.value) and TOKEN not in str(err.value)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
