"""A packet over the broker's size limit (deploy/mosquitto: ``max_packet_size``) vanished without
a trace but one broker log line (issue 10). Through a real Mosquitto 2.0.11 with the shipped
configuration, the line it writes (``Client ID disconnected due to oversize packet.``, found by
this very test) becomes an ``oversize_packet`` security event of the broker-log watcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.registry import load_registry
from ops_center.feed import Feed
from ops_center.security.broker_watch import BrokerLogWatcher
from tests.unit.test_security_broker_watch import MemoryEvents

pytestmark = pytest.mark.integration

REG = load_registry()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_an_oversize_packet_is_a_security_event(mosquitto: Any, protocol: int, tmp_path: Path) -> None:
    log = tmp_path / "mosquitto-file.log"  # as deployed: log_dest file (flushed line by line)
    broker = mosquitto(overrides={"log_dest": f"file {log}"})
    store = MemoryEvents()
    feed = Feed(ring_size=64, queue_max=16)
    watcher = BrokerLogWatcher(log, REG, store, feed, poll_s=0.05)
    watcher.start()
    host, port = broker.url.split("://", 1)[1].rsplit(":", 1)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tn-gw-01", protocol=protocol)
    c.connect(host, int(port))
    c.loop_start()
    try:
        c.publish(topics.telemetry("thong-nhat", "tn-gw-01"), b"x" * 300_000, qos=1)
        store.wait_for(1, timeout_s=15)
    finally:
        c.disconnect()
        c.loop_stop()
        watcher.stop()
    # paho reconnects and sends the unacknowledged packet again: one event per attempt
    event = store.rows[0]
    assert {e.kind for e in store.rows} == {"oversize_packet"}
    assert event.source == "broker" and event.client == "tn-gw-01"
    assert event.site == "thong-nhat" and event.gateway == "tn-gw-01"
    assert "oversize" in event.detail
