"""S1 end to end, with the shipped broker configuration and the real processes: a gateway that
publishes under another gateway and site is denied by the broker, nothing of it is stored by
`smartward ingest run`, and `smartward ops serve` (following the broker's log) shows the denial
as a security event to an admin, while the gateway's genuine batch is stored."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from contract import topics
from contract.codec import encode
from contract.models import Reading, TelemetryBatch
from ops_center.security.mqtt_credentials import read_credentials
from smartward.cli import main as smartward_main
from tests.servers._proc import start_process, stop_process, wait_for_port
from tests.servers.mosquitto import MosquittoFactory
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s1-end-to-end-secret-key-0123456789abcdef"
ADMIN_PASSWORD = "mat-khau-quan-tri-S1!"


def batch(gateway: str, sensor: str, metric: str, seq: int, value: float) -> bytes:
    now = datetime.now(UTC)
    return encode(TelemetryBatch(v=1, gateway=gateway, seq=seq, sent_at=now,
                                 readings=[Reading(sensor=sensor, metric=metric, ts=now, value=value)]))


class Gateway:
    def __init__(self, port: int, user: str, password: str) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, password)
        self.connected = threading.Event()
        self.c.on_connect = lambda *_a: self.connected.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.connected.wait(10)

    def publish(self, topic: str, payload: bytes) -> Any:
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return info

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def platform(
    mosquitto: MosquittoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    creds = tmp_path / "mqtt"
    assert smartward_main(["mqtt", "credentials", "--out", str(creds)]) == 0
    pw = read_credentials(creds / "credentials.txt")
    # As shipped: the broker writes its log to a file, which it flushes line by line (its
    # stdout, where the fixture puts the rest of the log, is block-buffered into a file).
    broker_log = tmp_path / "mosquitto-file.log"
    broker = mosquitto(credentials=creds, overrides={"log_dest": f"file {broker_log}"})
    db_path = tmp_path / "smartward.db"
    env = {**os.environ, "SMARTWARD_DB_URL": f"sqlite:///{db_path}", "SMARTWARD_SECRET_KEY": SECRET,
           "PYTHONPATH": str(ROOT)}
    for key in ("SMARTWARD_DB_URL", "SMARTWARD_SECRET_KEY"):
        monkeypatch.setenv(key, env[key])
    assert smartward_main(["db", "migrate"]) == 0
    add = subprocess.run([sys.executable, "-m", "smartward.cli", "users", "add", "admin", "--role", "admin",
                          "--password-stdin"], input=f"{ADMIN_PASSWORD}\n".encode(), env=env, cwd=ROOT,
                         capture_output=True, timeout=60, check=False)
    assert add.returncode == 0, add.stderr.decode()
    api_port = free_port()
    procs = [
        start_process([sys.executable, "-m", "smartward.cli", "ingest", "run"], tmp_path / "ingest.log",
                      env={**env, "SMARTWARD_MQTT_URL": f"mqtt://ingest:{pw['ingest']}@127.0.0.1:{broker.port}"},
                      cwd=ROOT),
        start_process([sys.executable, "-m", "smartward.cli", "ops", "serve", "--port", str(api_port)],
                      tmp_path / "ops.log",
                      env={**env, "SMARTWARD_MQTT_URL": f"mqtt://ops:{pw['ops']}@127.0.0.1:{broker.port}",
                           "SMARTWARD_BROKER_LOG": str(broker_log)},
                      cwd=ROOT),
    ]
    try:
        wait_for_port("127.0.0.1", api_port, proc=procs[1], timeout_s=60, log_path=tmp_path / "ops.log")
        yield {"broker": broker, "pw": pw, "db": db_path, "api": f"http://127.0.0.1:{api_port}",
               "logs": tmp_path}
    finally:
        for p in procs:
            stop_process(p)


def batch_outcomes(db: Path, gateway: str) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seq, outcome FROM ingest_batches WHERE gateway = ?",
                            (gateway,)).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_a_gateway_posing_as_another_site_is_denied_not_stored_and_reported(platform: dict[str, Any]) -> None:
    pw = platform["pw"]
    tn = Gateway(platform["broker"].port, "tn-gw-01", pw["tn-gw-01"])
    try:
        # MQTT 5: the broker answers the forged publish with 0x87 "not authorized" (docs/reliability.md S1).
        forged = tn.publish(topics.telemetry("quang-trung", "qt-gw-01"),
                            batch("qt-gw-01", "qt-aq-01", "pm25", 1, 999.0))
        assert forged.rc == mqtt.MQTT_ERR_SUCCESS
        tn.publish(topics.telemetry("thong-nhat", "tn-gw-01"), batch("tn-gw-01", "tn-aq-01", "pm25", 1, 41.5))
    finally:
        tn.close()

    wait_until(lambda: batch_outcomes(platform["db"], "tn-gw-01") == [(1, "stored")], 30,
               "the genuine batch stored by the ingest")
    assert batch_outcomes(platform["db"], "qt-gw-01") == []
    with sqlite3.connect(platform["db"]) as conn:
        assert conn.execute("SELECT count(*) FROM readings WHERE gateway = 'qt-gw-01'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0

    api = platform["api"]
    with httpx.Client(base_url=api, timeout=10) as http:
        token = http.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        found: list[dict[str, Any]] = []

        def denied() -> bool:
            page = http.get("/api/v1/security-events", headers=headers, params={"limit": 100})
            assert page.status_code == 200, page.text
            found[:] = [e for e in page.json()["items"] if e["kind"] == "publish_denied"]
            return bool(found)

        wait_until(denied, 20, "the broker's denial as a security event")
    event = found[0]
    assert (event["source"], event["gateway"], event["site"]) == ("broker", "tn-gw-01", "thong-nhat")
    assert "quang-trung/qt-gw-01" in event["detail"]
