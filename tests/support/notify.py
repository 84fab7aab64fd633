"""Helpers for the notification crash tests (no tests here): the notification policy of the
An Xá gas detectors, ``smartward ops serve``'s environment for it (SQLite, a real SMTP server),
the notification rows as the ops store holds them, and the gas leak that opens an incident."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from contract import topics
from tests.support.ops import Publisher, batch
from tests.support.waiting import wait_until

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


def ops_serve_env(tmp_path: Path, *, mqtt_url: str, smtp_url: str,
                  client_id: str) -> tuple[dict[str, str], Path]:
    """The environment of ``ops serve`` (and the API) on the SQLite store it returns, in
    `tmp_path`, with POLICY and quick notification retries."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, "utf-8")
    db = tmp_path / "ops.db"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SMARTWARD_DB_URL": f"sqlite:///{db}",
        "SMARTWARD_MQTT_URL": mqtt_url,
        "SMARTWARD_SECRET_KEY": SECRET,
        "SMARTWARD_NOTIFY_POLICY": str(policy),
        "SMARTWARD_SMTP_URL": smtp_url,
        "SMARTWARD_SMTP_FROM": "ioc@example.vn",
        "SMARTWARD_PUBLIC_URL": "https://ioc.example.vn",
        "SMARTWARD_OPS_CLIENT_ID": client_id,
        "SMARTWARD_NOTIFY_POLL_S": "0.2",
        "SMARTWARD_NOTIFY_RETRY_INITIAL_S": "0.2",
        "SMARTWARD_NOTIFY_RETRY_MAX_S": "1",
    }
    return env, db


def wait_all_sent(db: Path, n: int, what: str, *, timeout_s: float, log_path: Path,
                  proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until the store holds `n` notifications, all sent (`proc`: the ops service that
    must stay alive meanwhile; its log is `log_path`)."""
    wait_until(lambda: len(rows(db)) == n and all(r[2] == "sent" for r in rows(db)), timeout_s=timeout_s,
               what=what, log_path=log_path, alive=None if proc is None else lambda: proc.poll() is None)


def send_gas_leak(gateway: Publisher) -> None:
    """A gas reading over the critical threshold on ax-gas-01, five seconds ago."""
    at = datetime.now(UTC) - timedelta(seconds=5)
    gateway.send(topics.telemetry("an-xa", "ax-gw-02"), batch(1, at, 25.0))


def recipients(mails: Iterable[EmailMessage]) -> list[str]:
    """The addresses the mails went to, sorted."""
    return sorted(str(m["To"]).split("<")[1].rstrip(">") for m in mails)
