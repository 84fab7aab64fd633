"""TLS to the broker: ``mqtts://`` verified against the CA file of
``SMARTWARD_EDGE_MQTT_CA_FILE``, on a real Mosquitto with a TLS listener."""

from __future__ import annotations

import shutil
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.registry import load_registry
from edge.app import open_agent
from edge.clock import SystemClock
from edge.drivers.synthetic import SyntheticDriver
from edge.settings import EdgeSettings
from tests.servers._proc import missing_server
from tests.servers.mosquitto import MosquittoFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GW = "tn-gw-01"


def make_ca(workdir: Path, name: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        missing_server("openssl", "the openssl command is not on PATH")
    key, cert = workdir / f"{name}.key", workdir / f"{name}.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return key, cert


def server_cert(workdir: Path, ca_key: Path, ca: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl") or "openssl"
    key, csr, cert = workdir / "server.key", workdir / "server.csr", workdir / "server.pem"
    ext = workdir / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    subprocess.run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    key.chmod(0o644)
    return key, cert


@pytest.mark.parametrize("trusted", [True, False], ids=["our-ca", "another-ca"])
def test_mqtts_with_a_ca_file(tmp_path: Path, mosquitto: MosquittoFactory, trusted: bool) -> None:
    ca_key, ca = make_ca(tmp_path, "smartward-test-ca")
    _, other_ca = make_ca(tmp_path, "someone-else")
    key, cert = server_cert(tmp_path, ca_key, ca)
    broker = mosquitto(overrides={"cafile": str(ca), "certfile": str(cert), "keyfile": str(key)})
    url = broker.url.replace("mqtt://", "mqtts://")
    settings = EdgeSettings(mqtt_url=url, edge_mqtt_ca_file=ca if trusted else other_ca,
                            edge_outbox=str(tmp_path / "outbox"), edge_status_interval_s=0.5,
                            edge_reconnect_min_s=0.05, edge_reconnect_max_s=0.2, edge_connect_timeout_s=2)
    registry = load_registry()
    driver = SyntheticDriver(registry.sensors_of(GW), start=datetime.now(UTC))
    with open_agent(settings, registry, GW, clock=SystemClock(), driver=driver) as agent:
        thread = threading.Thread(target=agent.run, name="edge-agent")
        thread.start()
        try:
            if trusted:
                stats = agent.wait_until(lambda s: s.connected and s.counters.status_published > 0, 20)
                assert stats.counters.connect_failures == 0
            else:
                stats = agent.wait_until(lambda s: s.counters.connect_failures >= 2, 20)
                assert stats.counters.connects == 0  # a broker the CA file does not vouch for
        finally:
            agent.stop()
            thread.join(20)
