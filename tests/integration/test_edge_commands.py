"""Operator commands through a real Mosquitto (the project configuration): the edge agent of
the Thống Nhất lighting cabinet, on the simulated driver, receives ``cmd``, switches the
simulated lamp and answers on ``cmd/result``; the lamp's telemetry shows the change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.codec import decode_command_result, encode
from contract.models import Command, CommandResult
from contract.registry import load_registry
from edge.agent import Agent
from edge.app import open_agent
from edge.drivers.simulated import open_simulation
from tests.integration.test_edge_mqtt import fast_settings
from tests.servers.mosquitto import IngestFactory, MosquittoFactory
from tests.support.edge import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REG = load_registry()
SITE, GW, LAMP = "thong-nhat", "tn-gw-03", "tn-lamp-07"
SIM_T = datetime(2025, 11, 28, 12, 0, tzinfo=UTC)  # 19:00 in Nam Định: lamps on by schedule


class Operator:
    """The platform's side, as a plain MQTT client: publishes commands, collects results."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-operator",
                                  protocol=mqtt.MQTTv5)
        self.results: list[CommandResult] = []
        self.changed = threading.Condition()
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.client.subscribe(topics.cmd_result(SITE, GW), qos=1)
        assert subscribed.wait(5)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.results.append(decode_command_result(msg.payload))
            self.changed.notify_all()

    def send(self, payload: bytes) -> None:
        self.client.publish(topics.cmd(SITE, GW), payload, qos=1).wait_for_publish(5)

    def wait(self, n: int, timeout_s: float = 10.0) -> list[CommandResult]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.results) >= n, timeout_s), self.results
            return list(self.results)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def command(ident: str, args: dict[str, Any], *, ttl: timedelta = timedelta(minutes=5)) -> bytes:
    return encode(Command(v=1, id=ident, name="set_lamp", sensor=LAMP, args=args,
                          expires_at=datetime.now(UTC) + ttl))


@contextmanager
def lighting_cabinet(tmp_path: Path, url: str) -> Iterator[Agent]:
    sim = open_simulation(REG, GW, speed=120.0, start=SIM_T)
    settings = fast_settings(tmp_path, url)
    with (open_agent(settings, REG, GW, clock=sim.clock, driver=sim.driver, link=sim.driver) as agent,
          running(agent)):
        yield agent


def test_edge_applies_a_lamp_command_and_answers_on_its_result_topic(
    tmp_path: Path, mosquitto: MosquittoFactory, recording_ingest: IngestFactory
) -> None:
    broker = mosquitto()
    ingest = recording_ingest(broker.url)
    operator = Operator(broker.url)
    try:
        with lighting_cabinet(tmp_path, broker.url) as agent:
            agent.wait_until(lambda s: s.connected, 10)
            # A lamp reading or two under the schedule first (lamps report every 5 min).
            agent.wait_until(lambda s: s.counters.status_published >= 1
                             and s.at > SIM_T + timedelta(minutes=6), 10)
            operator.send(command("cmd-off", {"on": False}))
            [off] = operator.wait(1)
            switched_at = agent.snapshot().at
            operator.send(command("cmd-off", {"on": False}))  # the platform retried
            operator.send(command("cmd-late", {"on": True}, ttl=timedelta(seconds=-5)))
            operator.send(b'{"v":1,"id":"cmd-bad","name":"set_lamp"}')
            results = operator.wait(4)
            # The lamp's own telemetry: dark from the command on (the simulated clock runs
            # 120x, so a quarter of an hour of readings arrives within seconds).
            later = switched_at + timedelta(minutes=16)
            agent.wait_until(lambda s: s.at > later, 40)
            ingest.wait_for(lambda: any(r.ts > later for b in ingest.batches(GW).values()
                                        for r in b.readings), 20, "readings past the command")
            stats = agent.snapshot()
    finally:
        operator.close()
    assert (off.id, off.ok, off.detail) == ("cmd-off", True, "applied")
    assert [(r.id, r.ok, r.detail.split(":")[0]) for r in results] == [
        ("cmd-off", True, "applied"),
        ("cmd-off", True, "applied"),  # the same answer, not applied twice
        ("cmd-late", False, "expired"),
        ("cmd-bad", False, "bad_payload"),
    ]
    c = stats.counters
    assert (c.commands_applied, c.commands_duplicate, c.commands_rejected) == (1, 1, 2)
    power = [(r.ts, r.value) for b in ingest.batches(GW).values() for r in b.readings
             if r.sensor == LAMP and r.metric == "lamp_power_w"]
    before = [v for ts, v in power if ts < switched_at - timedelta(seconds=10)]
    after = [v for ts, v in power if switched_at + timedelta(minutes=6) <= ts <= later]
    assert before and min(before) > 50
    assert after and max(after) == 0.0
