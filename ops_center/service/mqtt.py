"""The ops service's own MQTT subscription: telemetry, SenML and status of every gateway.

Independent of the ingest (its own client id and persistent session), as docs/design.md's data
flow says: the ops center reads the broker directly, so an ingest or database outage does not
blind the rules.

- MQTT 5, ``clean_start=False`` with a Session Expiry Interval (MQTT-3.1.2.11.2): while the
  service restarts, the broker keeps its QoS 1 messages (with ``?protocol=3.1.1`` in the URL,
  for brokers that speak only MQTT 3.1.1: ``clean_session=False``, MQTT-3.1.2-4);
- ``manual_ack=True``: a PUBACK leaves only when the service says so (after the snapshot that
  covers the message is saved), so a crash makes the broker redeliver what the saved state
  lacks (MQTT-4.4.0-1: unacknowledged PUBLISHes are resent on reconnect);
- Receive Maximum (MQTT-3.1.2.11.3) caps the unacknowledged messages out to us (MQTT 3.1.1
  has none: the broker's in-flight limit does, else the bounded queue and TCP);
- ``on_message`` only hands the message over (never raises, never blocks on work): an
  exception there would kill paho's network thread (docs/reliability.md).

The link itself (session options, reconnect back-off, TLS, failover over the URLs of
``SMARTWARD_MQTT_URL``, subscriptions restored on reconnect, acks bound to the connection that
delivered a message) is ``mqttlink.link.Link``, shared with the ingest and the command link.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from contract import topics
from contract.brokers import BrokerUrl, BrokerUrlError
from mqttlink.client import SessionOptions, url_set_problem
from mqttlink.link import Link, OverLink
from ops_center.service.errors import ConfigError

logger = logging.getLogger(__name__)


def parse_broker_url(url: str) -> BrokerUrl:
    try:
        return BrokerUrl.parse(url)
    except BrokerUrlError as exc:
        raise ConfigError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as the worker sees it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    dup: bool
    generation: int
    received_at: datetime  # wall clock, UTC
    received_mono: float


class OpsMqttLink(OverLink):
    """The ops service's link: telemetry, SenML and status of every gateway, acked by hand."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        client_id: str,
        sink: Callable[[Inbound], None],
        receive_maximum: int,
        session_expiry_s: int,
        keepalive_s: int,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        if not urls:
            raise ConfigError("no MQTT URL (SMARTWARD_MQTT_URL)")
        parsed = [parse_broker_url(u) for u in urls]
        problem = url_set_problem(parsed)
        if problem is not None:
            raise ConfigError(problem)
        self._sink = sink
        self._on_state = on_state
        self.accepting = True  # False: new messages are left unacked (redelivered later)
        self.received = 0
        self.callback_errors = 0
        self.link = Link(
            parsed,
            SessionOptions(client_id=client_id, keepalive_s=keepalive_s, session_expiry_s=session_expiry_s,
                           receive_maximum=receive_maximum, manual_ack=True),
            subscriptions=(topics.subscription("telemetry"), topics.subscription("senml"),
                           topics.subscription("status")),
            on_message=self._on_message, on_state=self._state, on_error=self._count_error,
            log=logger, name="ops service",
        )

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        """Disconnect (the session stays on the broker for its expiry) and stop the thread."""
        self.accepting = False
        self.link.stop()

    # --- the link's callbacks (network thread) ---------------------------------------------

    def _count_error(self, _where: str) -> None:
        self.callback_errors += 1

    def _state(self, connected: bool, _generation: int) -> None:
        if self._on_state is not None:
            self._on_state(connected)

    def _on_message(self, message: mqtt.MQTTMessage, generation: int) -> None:
        if not self.accepting:
            return  # stopping: left unacked, the broker redelivers it to the next session
        self.received += 1
        self._sink(Inbound(message.topic, bytes(message.payload), message.mid, message.qos,
                           bool(message.retain), bool(message.dup), generation,
                           datetime.now(UTC), time.monotonic()))
