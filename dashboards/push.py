"""``smartward dashboards push``: folders and dashboards into a running Grafana, over its
HTTP API, with a service-account token (``Authorization: Bearer``).

A small httpx client rather than the ``grafana-client`` package: httpx is already the
``dashboards`` extra, four endpoints are used, and each HTTP status must become one precise,
Vietnamese-first error; a wrapper library would add a dependency and its own exceptions
to translate. Endpoints (Grafana docs, HTTP API "Folder" and "Dashboard"):

    GET  /api/health                 reachable? (no auth)
    GET  /api/folders/{uid}          200 folder | 404
    POST /api/folders                {"uid", "title"} -> 200 folder
    PUT  /api/folders/{uid}          {"title", "overwrite": true} -> 200 folder
    POST /api/dashboards/db          {"dashboard", "folderUid", "overwrite": true, "message"}
                                     -> 200 {"id", "uid", "url", "status": "success", "version"}

Idempotent: folders and dashboards are keyed by their fixed uids and overwritten, so a
second push changes nothing but Grafana's version counters. 401, 403, 412 (a dashboard of
the same name in the folder, version mismatch, a plugin's dashboard) and an unreachable
server stop the push with a clear error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import httpx

from dashboards.definitions import folders
from dashboards.model import Folder, render
from dashboards.settings import DashboardsSettings

logger = logging.getLogger(__name__)

COMMIT_MESSAGE: Final = "smartward dashboards push"


class GrafanaError(Exception):
    """Root of this package's errors; ``str()`` is the Vietnamese-first message."""


class GrafanaUnreachable(GrafanaError):
    pass


class GrafanaUnauthorized(GrafanaError):
    pass


class GrafanaForbidden(GrafanaError):
    pass


class GrafanaConflict(GrafanaError):
    pass


class GrafanaResponseError(GrafanaError):
    pass


_PRECONDITION: Final = {
    "version-mismatch": ("bảng đã bị người khác sửa (lệch phiên bản)",
                         "changed by someone else (version mismatch)"),
    "name-exists": ("đã có bảng cùng tên trong thư mục",
                    "a dashboard with the same name exists in the folder"),
    "plugin-dashboard": ("bảng thuộc về một plugin", "the dashboard belongs to a plugin"),
}


def _detail(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    if not isinstance(body, dict):
        return "", str(body)[:200]
    return str(body.get("status", "")), str(body.get("message", ""))[:200]


def _raise_for(response: httpx.Response, what: str) -> None:
    code = response.status_code
    if code < 400:
        return
    status, message = _detail(response)
    if code == 401:
        raise GrafanaUnauthorized(
            f"Grafana từ chối mã truy cập (401) khi {what}: kiểm tra SMARTWARD_GRAFANA_TOKEN "
            f"(token tài khoản dịch vụ) / Grafana refused the token (401): check "
            f"SMARTWARD_GRAFANA_TOKEN. {message}"
        )
    if code == 403:
        raise GrafanaForbidden(
            f"Tài khoản dịch vụ không đủ quyền (403) khi {what}: cần vai trò Editor, hoặc Admin để tạo "
            f"thư mục / the service account lacks permission (403): it needs Editor, or Admin for folders. "
            f"{message}"
        )
    if code in (409, 412):
        vi, en = _PRECONDITION.get(status, ("xung đột", "conflict"))
        raise GrafanaConflict(f"Grafana từ chối ({code}) khi {what}: {vi} / Grafana refused ({code}): {en}. "
                              f"{message}")
    raise GrafanaResponseError(f"Grafana trả lỗi {code} khi {what} / Grafana answered {code}: {message}")


@dataclass(frozen=True)
class Pushed:
    kind: str  # "folder" | "dashboard"
    uid: str
    action: str  # "created" | "updated" | "unchanged"
    version: int | None = None


class GrafanaClient:
    """The few calls ``push`` needs; a context manager (closes its connection pool)."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout_s,
            transport=transport,
        )

    def __enter__(self) -> GrafanaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, what: str, body: Any = None) -> httpx.Response:
        try:
            return self._http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise GrafanaUnreachable(
                f"Grafana không trả lời kịp tại {self.url} khi {what} / "
                f"Grafana at {self.url} timed out: {exc}"
            ) from exc
        except httpx.TransportError as exc:
            raise GrafanaUnreachable(
                f"Không kết nối được Grafana tại {self.url} (SMARTWARD_GRAFANA_URL) / cannot reach Grafana "
                f"at {self.url}: {exc}"
            ) from exc

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        _raise_for(response, what)
        try:
            body = response.json()
        except ValueError as exc:
            raise GrafanaResponseError(
                f"Grafana trả về dữ liệu không phải JSON khi {what} / Grafana answered non-JSON"
            ) from exc
        if not isinstance(body, dict):
            raise GrafanaResponseError(f"Phản hồi không đúng dạng khi {what} / unexpected response shape")
        return body

    def health(self) -> dict[str, Any]:
        what = "kiểm tra /api/health"
        return self._json(self._request("GET", "/api/health", what), what)

    def ensure_folder(self, folder: Folder) -> Pushed:
        what = f"đọc thư mục {folder.uid}"
        r = self._request("GET", f"/api/folders/{folder.uid}", what)
        if r.status_code == 404:
            what = f"tạo thư mục {folder.uid}"
            body = self._json(
                self._request("POST", "/api/folders", what, {"uid": folder.uid, "title": folder.title}), what
            )
            return Pushed("folder", folder.uid, "created", body.get("version"))
        current = self._json(r, what)
        if current.get("title") == folder.title:
            return Pushed("folder", folder.uid, "unchanged", current.get("version"))
        what = f"đổi tên thư mục {folder.uid}"
        body = self._json(
            self._request("PUT", f"/api/folders/{folder.uid}", what,
                          {"title": folder.title, "overwrite": True}),
            what,
        )
        return Pushed("folder", folder.uid, "updated", body.get("version"))

    def save_dashboard(self, dashboard: dict[str, Any], folder_uid: str) -> Pushed:
        what = f"lưu bảng {dashboard['uid']}"
        body = self._json(
            self._request(
                "POST",
                "/api/dashboards/db",
                what,
                {"dashboard": dashboard, "folderUid": folder_uid, "overwrite": True,
                 "message": COMMIT_MESSAGE},
            ),
            what,
        )
        if body.get("status") != "success":
            raise GrafanaResponseError(f"Grafana không xác nhận lưu {dashboard['uid']} / not saved: {body}")
        version = body.get("version")
        return Pushed("dashboard", str(body.get("uid", dashboard["uid"])),
                      "created" if version == 1 else "updated", version)


def push(settings: DashboardsSettings, *, transport: httpx.BaseTransport | None = None) -> list[Pushed]:
    """Every folder, then its dashboards. Stops at the first error (raised)."""
    if settings.grafana_token is None or not settings.grafana_token.get_secret_value():
        raise GrafanaUnauthorized(
            "Thiếu SMARTWARD_GRAFANA_TOKEN (token tài khoản dịch vụ Grafana) / SMARTWARD_GRAFANA_TOKEN "
            "(a Grafana service-account token) is not set"
        )
    done: list[Pushed] = []
    with GrafanaClient(settings.grafana_url, settings.grafana_token.get_secret_value(),
                       timeout_s=settings.grafana_timeout_s, transport=transport) as client:
        health = client.health()
        logger.info("Grafana %s at %s", health.get("version", "?"), settings.grafana_url)
        for folder in folders():
            done.append(client.ensure_folder(folder))
            for d in folder.dashboards:
                done.append(client.save_dashboard(render(d), folder.uid))
                logger.info("dashboard %s pushed", d.uid)
    return done
