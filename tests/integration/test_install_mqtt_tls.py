"""docs/install.md §3–4 as written: `smartward mqtt credentials`, a city CA and a server
certificate made with the guide's openssl commands, the shipped Mosquitto configuration with the
guide's TLS listener appended. A gateway publishes over TLS with its own password; a wrong
password and a client that does not trust the CA are refused."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.registry import load_registry
from ops_center.security.mqtt_credentials import generate, read_credentials
from tests.servers._proc import wait_for_port
from tests.servers.mosquitto import MosquittoFactory
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

# The guide's commands (docs/install.md §4), with 127.0.0.1 as the broker's name.
CERTS = """
openssl req -x509 -newkey rsa:3072 -days 3650 -nodes -keyout ca.key -out ca.pem -subj "/CN=smartward city CA"
openssl req -newkey rsa:3072 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \\
    -extfile san.ext -out server.pem
"""


def connect(port: int, user: str, password: str, ca: Path | None) -> tuple[mqtt.Client, str]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    else:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)  # the system store: it does not know the city CA
    done = threading.Event()
    outcome = ["no answer"]

    def on_connect(c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        outcome[0] = str(rc)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except (ssl.SSLError, OSError) as exc:
        return client, f"tls: {exc}"
    client.loop_start()
    done.wait(10)
    return client, outcome[0]


def test_a_gateway_publishes_over_the_guides_tls_listener(mosquitto: MosquittoFactory,
                                                          tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    subprocess.run(["sh", "-ec", CERTS], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    creds = tmp_path / "mqtt"
    generate(load_registry(), creds)
    accounts = read_credentials(creds / "credentials.txt")
    server = mosquitto(credentials=creds, start=False)
    tls_port = free_port("127.0.0.1")
    with server.config_path.open("a") as conf:
        conf.write(f"listener {tls_port} 127.0.0.1\ncertfile {tmp_path}/server.pem\n"
                   f"keyfile {tmp_path}/server.key\ncafile {tmp_path}/ca.pem\ntls_version tlsv1.2\n")
    server.start()
    wait_for_port("127.0.0.1", tls_port, timeout_s=15)

    gw = "tn-gw-01"
    client, rc = connect(tls_port, gw, accounts[gw], tmp_path / "ca.pem")
    try:
        assert rc == "Success"
        info = client.publish(topics.status("thong-nhat", gw), b"", qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()

    client, rc = connect(tls_port, gw, "wrong-password", tmp_path / "ca.pem")
    client.loop_stop()
    assert rc != "Success"
    client, rc = connect(tls_port, gw, accounts[gw], None)
    client.loop_stop()
    assert rc.startswith("tls:") and "certificate verify failed" in rc
