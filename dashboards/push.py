"""``smartward dashboards push``: folders and dashboards into a running Grafana, over its
HTTP API, with a service-account token (``Authorization: Bearer``), through ``grafana-client``
(the maintained successor of grafana-api). Calls (Grafana docs, HTTP API "Folder",
"Dashboard", "Health"):

    GET  /api/health                 reachable? (no auth)
    GET  /api/folders/{uid}          200 folder | 404           folder.get_folder
    POST /api/folders                {"uid", "title"} -> 200    folder.create_folder
    PUT  /api/folders/{uid}          {"title", "overwrite": true} folder.update_folder
    POST /api/dashboards/db          {"dashboard", "folderUid", "overwrite": true, "message"}
                                     -> 200 {"id", "uid", "url", "status": "success", "version"}
                                                                dashboard.update_dashboard

``/api/health`` goes through the client's plain ``GET`` rather than ``health.check()``, which
reads ``/api/frontend/settings``: the health route is the one Grafana documents for a
reachability check. grafana-client's exceptions carry the status code and the decoded body;
each becomes one precise, Vietnamese-first error here (the token is never in a message).

Idempotent: folders and dashboards are keyed by their fixed uids and overwritten, so a
second push changes nothing but Grafana's version counters. 401, 403, 412 (a dashboard of
the same name in the folder, version mismatch, a plugin's dashboard) and an unreachable
server stop the push with a clear error.

grafana-client is imported when a push runs: ``smartward dashboards --help`` and ``export``
work without the ``dashboards`` extra.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

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


def _detail(body: object) -> tuple[str, str]:
    """(Grafana's ``status`` word, its message) from an error body (JSON or text)."""
    if isinstance(body, dict):
        return str(body.get("status", "")), str(body.get("message", ""))[:200]
    return "", str(body or "")[:200]


def _error_for(code: int, body: object, what: str) -> GrafanaError:
    status, message = _detail(body)
    if code == 401:
        return GrafanaUnauthorized(
            f"Grafana từ chối mã truy cập (401) khi {what}: kiểm tra SMARTWARD_GRAFANA_TOKEN "
            f"(token tài khoản dịch vụ) / Grafana refused the token (401): check "
            f"SMARTWARD_GRAFANA_TOKEN. {message}"
        )
    if code == 403:
        return GrafanaForbidden(
            f"Tài khoản dịch vụ không đủ quyền (403) khi {what}: cần vai trò Editor, hoặc Admin để tạo "
            f"thư mục / the service account lacks permission (403): it needs Editor, or Admin for folders. "
            f"{message}"
        )
    if code in (409, 412):
        vi, en = _PRECONDITION.get(status, ("xung đột", "conflict"))
        return GrafanaConflict(f"Grafana từ chối ({code}) khi {what}: {vi} / Grafana refused ({code}): {en}. "
                               f"{message}")
    return GrafanaResponseError(f"Grafana trả lỗi {code} khi {what} / Grafana answered {code}: {message}")


@dataclass(frozen=True)
class Pushed:
    kind: str  # "folder" | "dashboard"
    uid: str
    action: str  # "created" | "updated" | "unchanged"
    version: int | None = None


class _NotFound(Exception):
    """A 404 where one is an answer (a folder not created yet)."""


class GrafanaClient:
    """The few calls ``push`` needs, over ``grafana_client.GrafanaApi``; a context manager
    (closes its connection pool)."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0) -> None:
        from grafana_client.api import GrafanaApi

        self.url = url.rstrip("/")
        self.shown = re.sub(r"//[^/@]*@", "//", self.url)  # for messages: no user:password
        # from_url appends "api" to the URL's path as written: a Grafana served under a path
        # (https://host/grafana) needs the trailing slash to become /grafana/api.
        self._api = GrafanaApi.from_url(self.url + "/", credential=token, timeout=timeout_s)
        self.api_url: str = self._api.client.url

    def __enter__(self) -> GrafanaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # grafana-client has no close(); its niquests session is ``client.s``.
        self._api.client.s.close()

    @contextmanager
    def _translated(self, what: str, *, not_found_ok: bool = False) -> Iterator[None]:
        """grafana-client's and niquests' exceptions -> this package's, Vietnamese first."""
        import niquests
        from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaTimeoutError

        try:
            yield
        except GrafanaTimeoutError as exc:
            raise GrafanaUnreachable(
                f"Grafana không trả lời kịp tại {self.shown} khi {what} / Grafana at {self.shown} timed out: "
                f"{exc.message}"
            ) from exc
        except GrafanaClientError as exc:
            if exc.status_code == 404 and not_found_ok:
                raise _NotFound(what) from exc
            raise _error_for(exc.status_code, exc.response, what) from exc
        except GrafanaException as exc:
            if exc.status_code == 0:  # a transport error grafana-client wrapped
                raise self._unreachable(exc.message) from exc
            raise _error_for(exc.status_code, exc.response, what) from exc
        except ValueError as exc:  # a 2xx body that is not JSON (niquests' JSONDecodeError is one)
            raise self._not_json(what) from exc
        except niquests.RequestException as exc:  # refused, reset, DNS: not wrapped by grafana-client
            raise self._unreachable(str(exc)) from exc

    def _not_json(self, what: str) -> GrafanaResponseError:
        return GrafanaResponseError(
            f"{self.shown} trả về dữ liệu không phải JSON khi {what}: SMARTWARD_GRAFANA_URL có phải địa chỉ "
            f"Grafana không? / {self.shown} answered something other than JSON: is SMARTWARD_GRAFANA_URL "
            f"Grafana's address?"
        )

    def _unreachable(self, detail: str) -> GrafanaUnreachable:
        return GrafanaUnreachable(
            f"Không kết nối được Grafana tại {self.shown} (SMARTWARD_GRAFANA_URL) / cannot reach Grafana "
            f"at {self.shown}: {detail}"
        )

    def _call(self, what: str, call: Callable[[], object], *, not_found_ok: bool = False) -> dict[str, Any]:
        with self._translated(what, not_found_ok=not_found_ok):
            body = call()
        if isinstance(body, str):  # grafana-client returns a text/* answer as text
            raise self._not_json(what)
        if not isinstance(body, dict):
            raise GrafanaResponseError(f"Phản hồi không đúng dạng khi {what} / unexpected response shape")
        return body

    def health(self) -> dict[str, Any]:
        return self._call("kiểm tra /api/health", lambda: self._api.client.GET("/health"))

    def ensure_folder(self, folder: Folder) -> Pushed:
        try:
            current = self._call(f"đọc thư mục {folder.uid}", lambda: self._api.folder.get_folder(folder.uid),
                                 not_found_ok=True)
        except _NotFound:
            body = self._call(f"tạo thư mục {folder.uid}",
                              lambda: self._api.folder.create_folder(folder.title, uid=folder.uid))
            return Pushed("folder", folder.uid, "created", body.get("version"))
        if current.get("title") == folder.title:
            return Pushed("folder", folder.uid, "unchanged", current.get("version"))
        body = self._call(
            f"đổi tên thư mục {folder.uid}",
            lambda: self._api.folder.update_folder(folder.uid, title=folder.title, overwrite=True),
        )
        return Pushed("folder", folder.uid, "updated", body.get("version"))

    def save_dashboard(self, dashboard: dict[str, Any], folder_uid: str) -> Pushed:
        body = self._call(
            f"lưu bảng {dashboard['uid']}",
            lambda: self._api.dashboard.update_dashboard({
                "dashboard": dashboard, "folderUid": folder_uid, "overwrite": True, "message": COMMIT_MESSAGE,
            }),
        )
        if body.get("status") != "success":
            raise GrafanaResponseError(f"Grafana không xác nhận lưu {dashboard['uid']} / not saved: {body}")
        version = body.get("version")
        return Pushed("dashboard", str(body.get("uid", dashboard["uid"])),
                      "created" if version == 1 else "updated", version)


def push(settings: DashboardsSettings, *, progress: Callable[[str], None] | None = None) -> list[Pushed]:
    """Every folder, then its dashboards. Stops at the first error (raised). ``progress`` is
    told each item as it is pushed (the CLI prints it on stderr)."""
    if settings.grafana_token is None or not settings.grafana_token.get_secret_value():
        raise GrafanaUnauthorized(
            "Thiếu SMARTWARD_GRAFANA_TOKEN (token tài khoản dịch vụ Grafana) / SMARTWARD_GRAFANA_TOKEN "
            "(a Grafana service-account token) is not set"
        )
    done: list[Pushed] = []
    total = sum(1 + len(f.dashboards) for f in folders())
    with GrafanaClient(settings.grafana_url, settings.grafana_token.get_secret_value(),
                       timeout_s=settings.grafana_timeout_s) as client:
        health = client.health()
        logger.info("Grafana %s at %s", health.get("version", "?"), settings.grafana_url)
        for folder in folders():
            done.append(client.ensure_folder(folder))
            if progress is not None:
                progress(f"[{len(done)}/{total}] thư mục / folder {folder.uid}")
            for d in folder.dashboards:
                done.append(client.save_dashboard(render(d), folder.uid))
                logger.debug("dashboard %s pushed", d.uid)
                if progress is not None:
                    progress(f"[{len(done)}/{total}] bảng / dashboard {d.uid}")
    return done
