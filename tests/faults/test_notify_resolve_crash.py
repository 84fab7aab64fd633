"""A person resolves an incident while the ops service is dead (issue #13): the ops service
(``smartward ops serve``, a real process) is killed with ``kill -9`` after it told the duty
officers of the incident; the incident is resolved through the API running as its own process
(``ops_center.api.asgi``, as a multi-worker deployment runs it). The ``resolved`` messages are
created by the resolve itself; once the service is restarted they arrive, each once."""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops_center.adapters.sqlite import SqliteOpsRepository
from tests.servers._proc import kill9, start_process, stop_process, wait_for_port
from tests.servers.smtp import SmtpServer
from tests.support.api import PASSWORD, add_users
from tests.support.notify import ROOT, ops_serve_env, recipients, rows, send_gas_leak, wait_all_sent
from tests.support.ops import Publisher
from tests.support.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def incident_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [str(r[0]) for r in conn.execute("SELECT DISTINCT incident_id FROM notifications")]


def test_a_resolve_while_the_ops_service_is_dead_is_announced_once_it_is_back(
    mosquitto: Any, tmp_path: Path
) -> None:
    broker = mosquitto()
    smtp = SmtpServer()
    smtp.start()
    env, db = ops_serve_env(tmp_path, mqtt_url=broker.url, smtp_url=smtp.url,
                            client_id="ops-notify-resolve-crash")
    ops_port, api_port = free_port(), free_port()
    ops_argv = [sys.executable, "-m", "smartward.cli", "ops", "serve", "--port", str(ops_port)]
    api_argv = [sys.executable, "-m", "uvicorn", "--factory", "ops_center.api.asgi:app_from_env",
                "--host", "127.0.0.1", "--port", str(api_port), "--no-proxy-headers"]
    ops_log, api_log = tmp_path / "ops.log", tmp_path / "api.log"
    ops = start_process(ops_argv, ops_log, env=env, cwd=ROOT)
    api = None
    gateway = Publisher(broker.url)
    try:
        wait_for_port("127.0.0.1", ops_port, proc=ops, timeout_s=60, log_path=ops_log)
        send_gas_leak(gateway)
        wait_all_sent(db, 2, "both opened messages sent", timeout_s=60, log_path=ops_log)
        kill9(ops)  # the ops service is dead from here

        repo = SqliteOpsRepository(db)
        try:
            add_users(repo)
        finally:
            repo.close()
        api = start_process(api_argv, api_log, env=env, cwd=ROOT)
        wait_for_port("127.0.0.1", api_port, proc=api, timeout_s=60, log_path=api_log)
        [incident_id] = incident_ids(db)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as c:
            token = c.post("/api/v1/auth/token", data={"username": "ax-manager", "password": PASSWORD})
            assert token.status_code == 200, token.text
            h = {"Authorization": f"Bearer {token.json()['access_token']}"}
            r = c.post(f"/api/v1/incidents/{incident_id}/resolve", json={"note": "Đã khóa van"}, headers=h)
            assert r.status_code == 200, r.text
            # Created by the resolve itself: there at once, while no ops service runs.
            assert [(x[0], x[1], x[2]) for x in rows(db) if x[1] == "resolved"] == [
                ("ax-an-toan", "resolved", "pending"),
                ("ax-truc-ban", "resolved", "pending"),
            ]
            again = c.post(f"/api/v1/incidents/{incident_id}/resolve", json={"note": "lần nữa"}, headers=h)
            assert again.status_code == 409
        assert len(rows(db)) == 4

        ops = start_process(ops_argv, ops_log, env=env, cwd=ROOT)
        wait_all_sent(db, 4, "the resolved messages sent after the restart", timeout_s=90, log_path=ops_log,
                      proc=ops)
        mails = smtp.messages()
        assert len(mails) == 4
        assert max(Counter(m["Message-ID"] for m in mails).values()) == 1
        resolved = recipients(m for m in mails if "Đã xử lý xong" in str(m["Subject"]))
        assert resolved == ["antoan.anxa@example.vn", "trucban.anxa@example.vn"]
    finally:
        gateway.close()
        stop_process(ops)
        if api is not None:
            stop_process(api)
        smtp.stop()
