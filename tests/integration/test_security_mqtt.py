"""S1/S2 with a real Mosquitto running the generated password file and ACL: a gateway
publishes and reads only under its own site/gateway, anonymous / wrong password / revoked
gateways are refused, and each refusal becomes a security event from the broker's log."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contract.registry import load_registry
from ops_center.adapters.records import SecurityEventRecord
from ops_center.adapters.sqlite import SqliteOpsRepository
from ops_center.mqtt_cli import main as mqtt_main
from ops_center.security.broker_log import BrokerLogTail
from ops_center.security.mqtt_credentials import generate, read_credentials, verify_mosquitto_hash
from tests.servers.mosquitto import MosquittoFactory, MosquittoServer

pytestmark = pytest.mark.integration

REG = load_registry()
TN = "smartward/v1/thong-nhat/tn-gw-01"
QT = "smartward/v1/quang-trung/qt-gw-01"


@dataclass
class Broker:
    port: int
    log: Path
    creds: Path
    server: MosquittoServer

    def reload(self) -> None:
        self.server.reload()


@pytest.fixture
def broker(mosquitto: MosquittoFactory, tmp_path: Path) -> Broker:
    """The shipped deploy/mosquitto/smartward.conf, authentication and debug log included,
    with the password file and ACL that `smartward mqtt credentials` generated."""
    creds = tmp_path / "mqtt"
    assert mqtt_main(["credentials", "--out", str(creds)]) == 0
    server = mosquitto(credentials=creds)
    return Broker(server.port, server.log_path, creds, server)


class Client:
    def __init__(self, port: int, user: str | None, password: str | None, client_id: str = "any") -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.connected = threading.Event()
        self.rc: object = None
        self.messages: list[tuple[str, bytes]] = []
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.connected.wait(5)

    def _on_connect(self, _c: object, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object) -> None:
        self.rc = rc
        self.connected.set()

    @property
    def accepted(self) -> bool:
        return isinstance(self.rc, mqtt.ReasonCode) and not self.rc.is_failure

    def publish(self, topic: str, payload: bytes = b"x") -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *_a: done.set()
        self.c.subscribe(topic, qos=1)
        done.wait(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def wait_for(pred: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_generated_password_file_is_mosquitto_format(tmp_path: Path) -> None:
    out = generate(REG, tmp_path / "c")
    lines = dict(line.split(":", 1) for line in (tmp_path / "c" / "passwd").read_text().splitlines())
    services = {"ingest", "ingest-2", "ops", "ops-api"}  # one account per service process
    assert set(lines) == services | {g.id for _, g in REG.iter_gateways()}
    assert all(v.startswith("$7$") and verify_mosquitto_hash(v, out.accounts[k]) for k, v in lines.items())
    assert (tmp_path / "c" / "credentials.txt").stat().st_mode & 0o777 == 0o600
    # Re-running keeps passwords; --rotate replaces them.
    assert generate(REG, tmp_path / "c").accounts == out.accounts
    assert generate(REG, tmp_path / "c", rotate=True).accounts["tn-gw-01"] != out.accounts["tn-gw-01"]


def test_gateways_publish_and_read_only_their_own_topics(broker: Broker) -> None:
    pw = read_credentials(broker.creds / "credentials.txt")
    ingest = Client(broker.port, "ingest", pw["ingest"], "ingest-1")
    ops = Client(broker.port, "ops", pw["ops"], "ops-1")
    assert ingest.accepted and ops.accepted
    ingest.subscribe("smartward/v1/+/+/telemetry")
    # Client id spoofing: tn-gw-01 claims qt-gw-01's client id; the broker uses the user name.
    tn = Client(broker.port, "tn-gw-01", pw["tn-gw-01"], client_id="qt-gw-01")
    assert tn.accepted
    tn.subscribe(f"{TN}/cmd")
    tn.subscribe(f"{QT}/cmd")  # granted by MQTT, but the ACL never delivers it
    tn.subscribe(f"{QT}/ack")
    tn.publish(f"{QT}/telemetry", b"forged")  # S1: another gateway, another site
    tn.publish("smartward/v1/thong-nhat/tn-gw-02/telemetry", b"forged-same-site")
    tn.publish(f"{TN}/telemetry", b"genuine")
    ops.publish(f"{QT}/cmd", b"for-qt")
    ops.publish(f"{TN}/cmd", b"for-tn")
    assert wait_for(lambda: (f"{TN}/telemetry", b"genuine") in ingest.messages)
    assert wait_for(lambda: (f"{TN}/cmd", b"for-tn") in tn.messages)
    # No waiting for "nothing else arrives": the broker handles one client's packets in order,
    # so once the genuine telemetry (published after the forged ones) and for-tn (published
    # after for-qt) have arrived, whatever the ACL let through would have arrived before them.
    assert [p for _, p in ingest.messages] == [b"genuine"]
    assert tn.messages == [(f"{TN}/cmd", b"for-tn")]
    for c in (ingest, ops, tn):
        c.close()


def test_anonymous_wrong_password_and_revoked_gateways_are_refused_and_reported(
    broker: Broker, tmp_path: Path
) -> None:
    pw = read_credentials(broker.creds / "credentials.txt")
    assert not Client(broker.port, None, None, "anon").accepted
    assert not Client(broker.port, "tn-gw-01", "wrong-password").accepted
    assert not Client(broker.port, "nobody", "x").accepted
    qt2 = Client(broker.port, "qt-gw-02", pw["qt-gw-02"])
    assert qt2.accepted
    qt2.close()
    generate(REG, broker.creds, revoke=["qt-gw-02"])
    broker.reload()
    assert wait_for(lambda: not Client(broker.port, "qt-gw-02", pw["qt-gw-02"]).accepted)
    still = Client(broker.port, "tn-gw-01", pw["tn-gw-01"])  # the others keep their passwords
    assert still.accepted
    still.publish(f"{QT}/status", b"{}")
    still.close()

    # The broker's log, as the composition root tails it, becomes security events.
    stop = threading.Event()
    events: list[SecurityEventRecord] = []

    def tail() -> None:
        for ev in BrokerLogTail(broker.log, REG, from_start=True, poll_s=0.05).events(stop):
            events.append(ev)

    t = threading.Thread(target=tail)
    t.start()
    try:
        assert wait_for(
            lambda: (
                sum(e.kind == "connect_refused" for e in events) >= 4
                and any(e.kind == "publish_denied" for e in events)
            )
        )
    finally:
        stop.set()
        t.join(5)
    refused = [e for e in events if e.kind == "connect_refused"]
    assert all(e.ip == "127.0.0.1" and e.source == "broker" for e in refused)
    denied = next(e for e in events if e.kind == "publish_denied")
    assert (denied.gateway, denied.site, denied.client) == ("tn-gw-01", "thong-nhat", "tn-gw-01")
    assert "quang-trung/qt-gw-01" in denied.detail
    repo = SqliteOpsRepository(tmp_path / "ops.db")
    repo.migrate()
    for e in events:
        repo.security.insert_security_event(e)
    page = repo.security.security_events(["thong-nhat"], 50, 0)
    assert page.total >= 1 and {e.kind for e in page.items} >= {"publish_denied"}
    repo.close()
