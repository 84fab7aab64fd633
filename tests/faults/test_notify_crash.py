"""Notifications survive a mail server outage and a crash of the ops service: incidents open
while the SMTP server is down, the ops service (``smartward ops serve``, a real process) is
killed with ``kill -9`` with its messages still pending; once the mail server is back and the
service restarted, every message arrives, none twice."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.servers._proc import kill9, start_process, stop_process, wait_for_port
from tests.servers.smtp import SmtpServer
from tests.support.notify import ROOT, ops_serve_env, recipients, rows, send_gas_leak, wait_all_sent
from tests.support.ops import Publisher
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_smtp_down_and_kill_9_every_message_arrives_once(mosquitto: Any, tmp_path: Path) -> None:
    broker = mosquitto()
    smtp = SmtpServer()  # its port is reserved; the server is down for now
    env, db = ops_serve_env(tmp_path, mqtt_url=broker.url, smtp_url=smtp.url, client_id="ops-notify-crash")
    port = free_port()
    argv = [sys.executable, "-m", "smartward.cli", "ops", "serve", "--port", str(port)]
    log = tmp_path / "ops.log"
    proc = start_process(argv, log, env=env, cwd=ROOT)
    gateway = Publisher(broker.url)
    try:
        wait_for_port("127.0.0.1", port, proc=proc, timeout_s=60, log_path=log)
        send_gas_leak(gateway)
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
        wait_all_sent(db, 2, "both notifications sent after the restart", timeout_s=90, log_path=log,
                      proc=proc)
        # Once a row is `sent`, nothing sends it again: what the server has now is final.
        mails = smtp.messages()
        assert recipients(mails) == ["antoan.anxa@example.vn", "trucban.anxa@example.vn"]
        assert max(Counter(m["Message-ID"] for m in mails).values()) == 1
        assert [(r[0], r[1]) for r in rows(db)] == [("ax-an-toan", "opened"), ("ax-truc-ban", "opened")]
    finally:
        gateway.close()
        stop_process(proc)
        smtp.stop()
