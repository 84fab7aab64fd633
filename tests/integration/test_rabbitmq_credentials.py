"""``smartward mqtt credentials`` for RabbitMQ: the definitions file, imported into a real node,
gives the whole chain what it needs (edge → MQTT → quorum queue → ingest → ack over MQTT) and
keeps each gateway to its own topics, like the Mosquitto ACL (docs/scale-out.md)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from edge.drivers.synthetic import SyntheticDriver
from ops_center.security.mqtt_credentials import generate
from ops_center.security.rabbitmq_credentials import write_definitions
from tests.integration.test_edge_mqtt import REGISTRY, T0, edge_agent
from tests.integration.test_ingest_amqp import QUEUE, assert_stored_once, drained_and_acked, ingest
from tests.servers.rabbitmq import HOST, RabbitCluster, RabbitFactory, message_counts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

GW, OTHER = "ax-gw-02", "tn-gw-01"


def provisioned(rabbitmq: RabbitFactory, tmp_path: Path) -> tuple[RabbitCluster, dict[str, str]]:
    cluster = rabbitmq()
    generated = generate(REGISTRY, tmp_path / "creds")
    path = write_definitions(REGISTRY, generated.accounts, tmp_path / "creds")
    cluster.nodes[0].ctl("import_definitions", str(path))
    return cluster, generated.accounts


def client(cluster: RabbitCluster, user: str, password: str) -> tuple[mqtt.Client, threading.Event]:
    lost = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311, clean_session=True)
    c.username_pw_set(user, password)
    c.on_disconnect = lambda *_a: lost.set()
    c.connect(HOST, cluster.nodes[0].mqtt_port)
    c.loop_start()
    return c, lost


def test_the_generated_accounts_carry_edge_to_store_and_the_ack_back(
        tmp_path: Path, rabbitmq: RabbitFactory) -> None:
    cluster, accounts = provisioned(rabbitmq, tmp_path)
    node = cluster.nodes[0]
    ingest_pw = accounts["ingest"]
    end = T0 + timedelta(minutes=10)
    db = tmp_path / "ingest.db"
    with ingest(cluster, f"sqlite:///{db}", ingest_source=cluster.amqp_url(QUEUE, "ingest", ingest_pw),
                mqtt_url=node.mqtt_url("ingest", ingest_pw)):
        driver = SyntheticDriver(REGISTRY.sensors_of(GW), start=T0, end=end)
        with edge_agent(tmp_path / GW, node.mqtt_url(GW, accounts[GW]), speed=300, end=end,
                        gateway=GW, driver=driver) as agent:
            last = agent.wait_until(drained_and_acked(end), 90).outbox.last_seq
    assert_stored_once(db, {GW: last}, end)


def test_a_gateway_cannot_publish_for_another_nor_read_its_acks(
        tmp_path: Path, rabbitmq: RabbitFactory) -> None:
    cluster, accounts = provisioned(rabbitmq, tmp_path)
    node = cluster.nodes[0]
    site, other_site = REGISTRY.site_of(GW), REGISTRY.site_of(OTHER)
    assert site is not None and other_site is not None
    # Wrong password: refused at CONNECT.
    bad = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=GW, protocol=mqtt.MQTTv311)
    bad.username_pw_set(GW, "wrong")
    refused: list[Any] = []
    answered = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        refused.append(rc)
        answered.set()

    bad.on_connect = on_connect
    bad.connect(HOST, node.mqtt_port)
    bad.loop_start()
    try:
        assert answered.wait(10) and refused[0].is_failure, refused
    finally:
        bad.loop_stop()
    # Subscribing to another gateway's acks: refused (RabbitMQ 3.10 closes the connection;
    # a SUBACK with 0x80 would do as well).
    c, lost = client(cluster, GW, accounts[GW])
    granted: list[Any] = []
    got = threading.Event()

    def on_subscribe(_c: Any, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
        granted.extend(codes)
        got.set()

    c.on_subscribe = on_subscribe
    c.on_disconnect = lambda *_a: (lost.set(), got.set())
    c.subscribe(topics.ack(other_site, OTHER), qos=1)
    assert got.wait(10)
    assert lost.is_set() or granted[0].is_failure, granted
    c.disconnect()
    c.loop_stop()
    # The AMQP queue exists (declared by an ingest account) and gets nothing from a publish
    # under another gateway's topic: the broker closes that connection instead.
    with ingest(cluster, f"sqlite:///{tmp_path / 'i.db'}",
                ingest_source=cluster.amqp_url(QUEUE, "ingest", accounts["ingest"]),
                mqtt_url=node.mqtt_url("ingest", accounts["ingest"])) as worker:
        c, lost = client(cluster, GW, accounts[GW])
        c.publish(topics.telemetry(other_site, OTHER), b"{}", qos=1)
        assert lost.wait(10), "publishing under another gateway's topic was not refused"
        c.loop_stop()
        assert worker.metrics.received.labels("telemetry")._value.get() == 0
    assert message_counts(node, QUEUE) == (0, 0)
