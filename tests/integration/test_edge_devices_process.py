"""A gateway as its service runs it: ``smartward edge run --gateway GW`` (no ``--simulate``)
as a process, reading a real Modbus device and a LoRaWAN device through a network server's
MQTT integration, publishing to a real Mosquitto, and speaking systemd's notify protocol
(READY=1, then WATCHDOG=1 from its loop) on a socket the test holds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.servers.mosquitto import IngestFactory, MosquittoFactory
from tests.support.edge import network_server, received_readings
from tests.support.registry import modbus_tcp_sensor, ward_registry_yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "chirpstack"
GW = "tn-gw-01"


def test_the_service_reads_modbus_and_lorawan_devices_and_feeds_the_watchdog(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory, modbus_devices: Any
) -> None:
    dev = modbus_devices(units=(3,))
    dev.set_holding(3, 0, [1234])
    up = json.loads((FIXTURES / "up.json").read_text())
    app = up["deviceInfo"]["applicationId"]
    registry = tmp_path / "registry.yaml"
    flood = modbus_tcp_sensor("tn-flood-01", dev.port, unit=3, interval_s=1)
    registry.write_text(ward_registry_yaml(GW, flood + """          - id: tn-aq-05
            kind: air_quality
            metrics: [pm25, pm10, lora_rssi_dbm]
            driver: {type: lorawan, dev_eui: "0004a30b001c0530", fields: {pm25: pm25, pm10: pm10}}
          - id: tn-noise-01
            kind: noise
"""))
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    notify_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(30)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SMARTWARD_REGISTRY": str(registry),
           "SMARTWARD_MQTT_URL": broker.url, "SMARTWARD_EDGE_OUTBOX": str(tmp_path / "outbox"),
           "SMARTWARD_EDGE_FLUSH_INTERVAL_MS": "500", "SMARTWARD_EDGE_STATUS_INTERVAL_S": "0.5",
           "SMARTWARD_EDGE_LORAWAN_MQTT_URL": broker.url, "SMARTWARD_EDGE_LORAWAN_APPLICATION_ID": app,
           "NOTIFY_SOCKET": notify_path}
    proc = subprocess.Popen([sys.executable, "-m", "smartward.cli", "edge", "run", "--gateway", GW],
                            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    stack = ExitStack()  # the network server, once the agent is ready
    try:
        assert sock.recv(64) == b"READY=1"
        assert sock.recv(64) == b"WATCHDOG=1"
        ns = stack.enter_context(network_server(broker.url))

        def readings() -> list[tuple[str, str, float]]:
            return [(r.sensor, r.metric, r.value) for r in received_readings(ingest, GW)]

        # The LoRaWAN driver subscribes once connected; publish until its uplink arrives.
        fcnt = 1000

        def lora_arrived() -> bool:
            return any(s == "tn-aq-05" for s, _, _ in readings())
        while not lora_arrived():
            fcnt += 1
            ns.publish(f"application/{app}/device/0004a30b001c0530/event/up",
                       json.dumps({**up, "fCnt": fcnt}), qos=1).wait_for_publish(10)
            try:
                ingest.wait_for(lora_arrived, 1, "uplink through the agent")
            except AssertionError:
                assert fcnt < 1030, "no LoRaWAN reading reached the ingest"
        ingest.wait_for(lambda: any(s == "tn-flood-01" for s, _, _ in readings()), 20, "modbus reading")
        got = set(readings())
        assert {round(v, 6) for s, _, v in got if s == "tn-flood-01"} == {123.4}
        assert ("tn-aq-05", "pm25", 48.2) in got and ("tn-aq-05", "lora_rssi_dbm", -97.0) in got
        assert not any(s == "tn-noise-01" for s, _, _ in got)  # simulated: never read for real
    finally:
        stack.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        stderr = proc.stderr.read() if proc.stderr else ""
        sock.close()
    assert code == 0, stderr
    assert "tn-noise-01" in stderr  # named as skipped
