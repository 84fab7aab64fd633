"""Notifications survive a mail server outage and a crash of the ops service: incidents open
while the SMTP server is down, the ops service (``smartward ops serve``, a real process) is
killed with ``kill -9`` with its messages still pending; once the mail server is back and the
service restarted, every message arrives, none twice."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from tests.integration.test_ops_service import Publisher, batch
from tests.servers._proc import kill9, start_process, stop_process, wait_for_port
from tests.servers.smtp import SmtpServer
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "notify-crash-test-secret-0123456789abcdef"
POLICY = """\
version: 1
contacts:
  - id: ax-truc-ban
    name: "Trực ban CCN An Xá"
    email: trucban.anxa@example.vn
    sites: [an-xa]
  - id: ax-an-toan
    name: "Cán bộ an toàn CCN An Xá"
    email: antoan.anxa@example.vn
    sites: [an-xa]
policies:
  - id: ax-gas
    sites: [an-xa]
    min_severity: critical
    channels: [email]
    notify: [ax-truc-ban, ax-an-toan]
    escalate:
      - after_min: 600
        notify: [ax-truc-ban]
"""


def rows(db: Path) -> list[tuple[str, str, str, int]]:
    try:
        with sqlite3.connect(db) as conn:
            return [
                (str(a), str(b), str(c), int(d))
                for a, b, c, d in conn.execute(
                    "SELECT contact, reason, state, attempts FROM notifications ORDER BY contact"
                )
            ]
    except sqlite3.OperationalError:  # not migrated yet
        return []


def test_smtp_down_and_kill_9_every_message_arrives_once(mosquitto: Any, tmp_path: Path) -> None:
    broker = mosquitto()
    smtp = SmtpServer()  # its port is reserved; the server is down for now
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, "utf-8")
    db = tmp_path / "ops.db"
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SMARTWARD_DB_URL": f"sqlite:///{db}",
        "SMARTWARD_MQTT_URL": broker.url,
        "SMARTWARD_SECRET_KEY": SECRET,
        "SMARTWARD_NOTIFY_POLICY": str(policy),
        "SMARTWARD_SMTP_URL": smtp.url,
        "SMARTWARD_SMTP_FROM": "ioc@example.vn",
        "SMARTWARD_PUBLIC_URL": "https://ioc.example.vn",
        "SMARTWARD_OPS_CLIENT_ID": "ops-notify-crash",
        "SMARTWARD_NOTIFY_POLL_S": "0.2",
        "SMARTWARD_NOTIFY_RETRY_INITIAL_S": "0.2",
        "SMARTWARD_NOTIFY_RETRY_MAX_S": "1",
    }
    argv = [sys.executable, "-m", "smartward.cli", "ops", "serve", "--port", str(port)]
    log = tmp_path / "ops.log"
    proc = start_process(argv, log, env=env, cwd=ROOT)
    gateway = Publisher(broker.url)
    try:
        wait_for_port("127.0.0.1", port, proc=proc, timeout_s=60, log_path=log)
        gateway.send(
            topics.telemetry("an-xa", "ax-gw-02"), batch(1, datetime.now(UTC) - timedelta(seconds=5), 25.0)
        )
        # Both messages created with the incident, each tried and failed at least once.
        wait_until(
            lambda: len(rows(db)) == 2 and all(r[2] == "pending" and r[3] >= 1 for r in rows(db)),
            timeout_s=60,
            what="two pending notifications with failed attempts",
            log_path=log,
        )
        kill9(proc)
        smtp.start()
        proc = start_process(argv, log, env=env, cwd=ROOT)
        wait_until(
            lambda: len(rows(db)) == 2 and all(r[2] == "sent" for r in rows(db)),
            timeout_s=90,
            what="both notifications sent after the restart",
            log_path=log,
            alive=lambda: proc.poll() is None,
        )
        # Once a row is `sent`, nothing sends it again: what the server has now is final.
        mails = smtp.messages()
        assert sorted(str(m["To"]).split("<")[1].rstrip(">") for m in mails) == [
            "antoan.anxa@example.vn",
            "trucban.anxa@example.vn",
        ]
        assert max(Counter(m["Message-ID"] for m in mails).values()) == 1
        assert [(r[0], r[1]) for r in rows(db)] == [("ax-an-toan", "opened"), ("ax-truc-ban", "opened")]
    finally:
        gateway.close()
        stop_process(proc)
        smtp.stop()
