"""A recorded contract of the parts of Grafana's HTTP API that ``smartward dashboards push``
uses, served by a local HTTP server (no Grafana can be installed here). Status codes and
body shapes follow Grafana's documentation (HTTP API: "Folder", "Dashboard", "Search",
"Health"; Authentication: service-account tokens as ``Authorization: Bearer``):

    GET  /api/health            200 {"commit", "database": "ok", "version"}; no auth
    GET  /api/folders/:uid      200 folder | 404 {"message": "folder not found"}
    POST /api/folders           {"uid", "title"} -> 200 folder | 409 same uid exists
    PUT  /api/folders/:uid      {"title", "version" | "overwrite"} -> 200 folder
                                | 404 | 412 {"status": "version-mismatch"}
    POST /api/dashboards/db     {"dashboard", "folderUid", "overwrite", "message"}
                                -> 200 {"id", "uid", "url", "status": "success", "version", "slug"}
                                | 400 folder not found | 412 {"status": "version-mismatch" | "name-exists"}
    GET  /api/search            ?type=dash-db|dash-folder&folderUIDs=&query= -> 200 [hit...]

Every other call without a known token answers 401 {"message": "Invalid API key"}; a token
whose role is Viewer answers 403 {"title": "Access denied", "message": ...} to writes.
``fail_next`` forces the next answer on a path (an operator's edit racing the push...).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

VERSION = "11.3.0"


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@dataclass
class GrafanaState:
    tokens: dict[str, str]  # token -> role ("Admin", "Editor", "Viewer")
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, auth header
    fail_next: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def _folder_json(f: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f["id"], "uid": f["uid"], "title": f["title"],
        "url": f"/dashboards/f/{f['uid']}/{slugify(f['title'])}",
        "hasAcl": False, "canSave": True, "canEdit": True, "canAdmin": True,
        "createdBy": "sa-smartward", "created": "2026-01-01T00:00:00Z",
        "updatedBy": "sa-smartward", "updated": "2026-01-01T00:00:00Z", "version": f["version"],
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null")

    def _role(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth or not auth.startswith("Bearer "):
            return None
        return self.server.state.tokens.get(auth.removeprefix("Bearer "))

    def _handle(self, method: str) -> None:
        st = self.server.state
        url = urlsplit(self.path)
        path = url.path
        body = self._body() if method in ("POST", "PUT") else None
        with st.lock:
            st.requests.append((method, path, self.headers.get("Authorization")))
            if path == "/api/health" and method == "GET":
                return self._send(200, {"commit": "0000000", "database": "ok", "version": VERSION})
            role = self._role()
            if role is None:
                return self._send(401, {"message": "Invalid API key", "statusCode": 401, "traceID": ""})
            if method != "GET" and role == "Viewer":
                return self._send(403, {"accessErrorId": "ACE0000000001", "title": "Access denied",
                                        "message": "You'll need additional permissions to perform "
                                                   "this action."})
            forced = st.fail_next.pop((method, path), None)
            if forced is not None:
                return self._send(*forced)
            return self._route(method, path, parse_qs(url.query), body)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        st = self.server.state
        m = re.fullmatch(r"/api/folders/([^/]+)", path)
        if m and method == "GET":
            f = st.folders.get(m.group(1))
            return self._send(200, _folder_json(f)) if f else self._send(404, {"message": "folder not found"})
        if m and method == "PUT":
            f = st.folders.get(m.group(1))
            if f is None:
                return self._send(404, {"message": "folder not found"})
            if not body.get("overwrite") and body.get("version") != f["version"]:
                return self._send(412, {"message": "the folder has been changed by someone else",
                                        "status": "version-mismatch"})
            f["title"] = body["title"]
            f["version"] += 1
            return self._send(200, _folder_json(f))
        if path == "/api/folders" and method == "POST":
            uid = body.get("uid")
            if not body.get("title"):
                return self._send(400, {"message": "folder title cannot be empty"})
            if uid in st.folders:
                return self._send(409, {"message": "a folder with the same uid already exists"})
            f = {"id": st.new_id(), "uid": uid, "title": body["title"], "version": 1}
            st.folders[uid] = f
            return self._send(200, _folder_json(f))
        if path == "/api/dashboards/db" and method == "POST":
            return self._save_dashboard(body)
        if path == "/api/search" and method == "GET":
            return self._search(query)
        return self._send(404, {"message": "Not found"})

    def _save_dashboard(self, body: Any) -> None:
        st = self.server.state
        dash = body.get("dashboard") or {}
        uid, title, folder = str(dash.get("uid") or ""), dash.get("title"), body.get("folderUid", "")
        if not title:
            return self._send(400, {"message": "Dashboard title cannot be empty", "status": "empty-name"})
        if folder and folder not in st.folders:
            return self._send(400, {"message": "folder not found", "status": "not-found"})
        for other_uid, other in st.dashboards.items():
            if other_uid != uid and other["folderUid"] == folder and other["dashboard"]["title"] == title:
                return self._send(412, {"message": "A dashboard with the same name in the folder "
                                                   "already exists",
                                        "status": "name-exists"})
        existing = st.dashboards.get(uid)
        if existing and not body.get("overwrite") and dash.get("version") != existing["version"]:
            return self._send(412, {"message": "The dashboard has been changed by someone else",
                                    "status": "version-mismatch"})
        version = existing["version"] + 1 if existing else 1
        did = existing["id"] if existing else st.new_id()
        st.dashboards[uid] = {"id": did, "dashboard": {**dash, "id": did, "version": version},
                              "folderUid": folder, "version": version, "message": body.get("message")}
        slug = slugify(title)
        return self._send(200, {"id": did, "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success",
                                "version": version, "slug": slug})

    def _search(self, query: dict[str, list[str]]) -> None:
        st = self.server.state
        kind = query.get("type", [""])[0]
        folder_uids = set(",".join(query.get("folderUIDs", [])).split(",")) - {""}
        text = query.get("query", [""])[0].lower()
        hits: list[dict[str, Any]] = []
        if kind in ("", "dash-folder"):
            hits += [{"id": f["id"], "uid": f["uid"], "title": f["title"], "uri": f"db/{slugify(f['title'])}",
                      "url": f"/dashboards/f/{f['uid']}/{slugify(f['title'])}", "slug": "",
                      "type": "dash-folder",
                      "tags": [], "isStarred": False, "sortMeta": 0}
                     for f in st.folders.values() if text in f["title"].lower()]
        if kind in ("", "dash-db"):
            for uid, d in st.dashboards.items():
                if folder_uids and d["folderUid"] not in folder_uids:
                    continue
                if text not in d["dashboard"]["title"].lower():
                    continue
                f = st.folders.get(d["folderUid"], {})
                hits.append({"id": d["id"], "uid": uid, "title": d["dashboard"]["title"],
                             "uri": f"db/{slugify(d['dashboard']['title'])}",
                             "url": f"/d/{uid}/{slugify(d['dashboard']['title'])}", "slug": "",
                             "type": "dash-db", "tags": d["dashboard"].get("tags", []), "isStarred": False,
                             "folderId": f.get("id"), "folderUid": d["folderUid"],
                             "folderTitle": f.get("title"), "folderUrl": f"/dashboards/f/{d['folderUid']}/",
                             "sortMeta": 0})
        return self._send(200, hits)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: GrafanaState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def grafana(tokens: dict[str, str]) -> Iterator[tuple[str, GrafanaState]]:
    """(base URL, state) of a contract server on a free port, for the block's duration."""
    state = GrafanaState(tokens=tokens)
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, name="grafana-contract", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
