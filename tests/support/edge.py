"""Helpers for the edge agent's tests (no tests here): an agent run in a thread, quick network
timers, what a recording ingest received, a network server's MQTT client as ChirpStack
publishes, and the base of the unit tests' fake broker connections. The registries these
tests wire their devices into are built with tests/support/registry.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract.brokers import BrokerUrl
from contract.codec import decode_telemetry
from contract.models import Reading
from edge.agent import Agent
from edge.publisher import Connected, Disconnected, EventSink
from edge.settings import EdgeSettings


def quick_settings(tmp_path: Path, url: str, **options: Any) -> EdgeSettings:
    """A gateway polling its devices five times a second and flushing twice a second, with
    network timers in tenths of seconds."""
    base: dict[str, Any] = {
        "mqtt_url": url, "edge_outbox": str(tmp_path / "outbox"), "edge_flush_interval_ms": 500,
        "edge_poll_interval_ms": 200, "edge_status_interval_s": 0.5, "edge_reconnect_min_s": 0.05,
        "edge_reconnect_max_s": 0.5,
    }
    return EdgeSettings(**(base | options))


@contextmanager
def running(agent: Agent, *, join_timeout_s: float = 20.0) -> Iterator[Agent]:
    """The agent's loop in a thread; stopped, and proven stopped, on the way out."""
    thread = threading.Thread(target=agent.run, name="edge-agent")
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(timeout=join_timeout_s)
        assert not thread.is_alive(), "the agent did not stop"


class MemoryConnection:
    """What the unit tests' fake broker connections share: the agent binds its event sink,
    uses the connection as a context manager, and hears ``connect``/``disconnect`` as the MQTT
    publisher would announce them. Subclasses publish."""

    def __init__(self) -> None:
        self.sink: EventSink = lambda event: None
        self.will: Callable[[], bytes] | None = None
        self.connected = False

    def bind(self, sink: EventSink, will: Callable[[], bytes]) -> Self:
        self.sink, self.will = sink, will
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def connect(self) -> None:
        self.connected = True
        self.sink(Connected("memory://", False))

    def disconnect(self) -> None:
        self.connected = False
        self.sink(Disconnected("memory://", "test"))

    def close(self, *, final_status: bytes | None = None, timeout_s: float = 5.0) -> bool:
        return True


def received_readings(ingest: Any, gateway: str) -> list[Reading]:
    """Every reading in every copy of every batch the recording ingest got from `gateway`."""
    return [r for payloads in ingest.copies(gateway).values() for p in payloads
            for r in decode_telemetry(p).readings]


@contextmanager
def network_server(url: str) -> Iterator[mqtt.Client]:
    """A LoRaWAN network server's MQTT integration, connected to the broker at `url`."""
    broker = BrokerUrl.parse(url)
    ns = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chirpstack-test")
    ns.connect(broker.host, broker.port)
    ns.loop_start()
    try:
        yield ns
    finally:
        ns.loop_stop()
        ns.disconnect()
