"""The ingest's source port: where messages come from, and where their acks go.

Two roles, two ports:

- ``Source`` hands the worker every message (topic, payload, an ack handle) through a sink, and
  takes the acknowledgement of a flush after its transaction committed. Adapters:
  ``ingest.mqtt_source.MqttLink`` (a shared MQTT subscription over ``mqttlink``, the default) and
  ``ingest.amqp_source.AmqpSource`` (a RabbitMQ quorum queue fed by the broker's MQTT plugin,
  docs/contract.md "Scale-out and high availability").
- ``AckPublisher`` publishes the retained ack watermarks back to the gateways. They always go over
  MQTT, whatever the source: with the MQTT source it is the same link, with the AMQP source a
  second, publish-only MQTT link to the same broker cluster.

An ack handle is only meaningful on the connection (MQTT) or channel (AMQP) that delivered the
message: every ``Inbound`` carries the generation of that connection, and a source acks only
messages of its current generation (the others are redelivered and acked then, as duplicates).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Inbound:
    """One delivered message and its ack handle (``mid``, ``qos``, ``generation``)."""

    topic: str  # always the MQTT topic (an AMQP routing key is turned back into one)
    payload: bytes
    mid: int  # MQTT packet identifier, or AMQP delivery tag
    qos: int  # 0: nothing to acknowledge
    generation: int  # of the connection or channel that delivered it
    received_at: float  # time.time() on receipt
    received_mono: float  # time.monotonic() on receipt


Sink = Callable[[Inbound], None]


class Source(Protocol):
    """Delivers messages into a sink; acknowledges them after their commit, in order."""

    @property
    def subscribed(self) -> threading.Event:
        """Set when the broker confirmed the subscriptions (MQTT SUBACK) or the consumer
        (AMQP basic.consume-ok); cleared while disconnected."""

    @property
    def connected(self) -> bool: ...

    def start(self, sink: Sink) -> None:
        """Connect (in the background, retrying over every broker) and deliver into ``sink``.
        The sink is called from the source's own thread and may block (backpressure)."""

    def stop(self, timeout_s: float = 5.0) -> None:
        """Let the acks already given go out, then disconnect (unacked messages come back)."""

    def ack(self, messages: Sequence[Inbound]) -> int:
        """Acknowledge, in the given order, every message that came on the current connection;
        returns how many. Called only after the transaction holding them committed."""


class AckPublisher(Protocol):
    """Publishes retained ack watermarks (``{"v":1,"seq":N}`` on each gateway's ack topic)."""

    @property
    def connected(self) -> bool: ...

    def start(self) -> None:
        """Connect in the background (failover over every broker)."""

    def take_reconnected(self) -> bool:
        """True once after each (re)connection: the worker then republishes every watermark."""

    def publish_watermarks(self, marks: dict[str, int], site_of: Callable[[str], str | None]) -> int:
        """Publish ``marks`` (gateway → seq); returns how many were handed to the broker."""

    def stop(self, timeout_s: float = 5.0) -> None: ...
