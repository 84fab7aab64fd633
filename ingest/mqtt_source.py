"""The MQTT adapter of the ingest's source port (ingest/source.py), and its ack publisher.

One MQTT link (``mqttlink.link.Link``: failover over several brokers, a persistent session,
subscriptions restored on reconnect, acks bound to the connection that delivered a message)
with the ingest's part on top: shared subscriptions for several workers, the
``broker_connected`` gauge, acks after commit, and the retained ack watermarks. With the AMQP
source the same class, without subscriptions, only publishes the watermarks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt

from contract import topics
from contract.brokers import BrokerUrl, BrokerUrlError
from contract.codec import encode
from contract.models import Ack
from ingest.errors import IngestError
from ingest.metrics import IngestMetrics
from ingest.source import Inbound, Sink
from mqttlink.client import SessionOptions, url_set_problem
from mqttlink.link import Link, OverLink

logger = logging.getLogger(__name__)


class ConfigError(IngestError):
    """Settings that cannot work (bad broker URL, mixed TLS and plain URLs)."""


def parse_broker_url(url: str) -> BrokerUrl:
    try:
        return BrokerUrl.parse(url)
    except BrokerUrlError as exc:
        raise ConfigError(str(exc)) from exc


class MqttLink(OverLink):
    """The ingest's MQTT link: a ``Source`` (with subscriptions) and an ``AckPublisher``
    (ingest/source.py)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        client_id: str,
        subscriptions: Sequence[str],
        receive_maximum: int,
        session_expiry_s: int,
        keepalive_s: int,
        metrics: IngestMetrics,
        connection_gauge: bool = True,
    ) -> None:
        """``connection_gauge``: this link's state is the worker's ``broker_connected`` (False
        for the publish-only link beside an AMQP source, which owns that gauge)."""
        parsed = [parse_broker_url(u) for u in urls]
        problem = url_set_problem(parsed)
        if problem is not None:
            raise ConfigError(problem)
        self._sink: Sink | None = None
        self._metrics = metrics
        self._gauge = connection_gauge
        self._reconnected = threading.Event()
        self._last_publishes: list[mqtt.MQTTMessageInfo] = []
        # MQTT 3.1.1 (``?protocol=3.1.1``) has no Receive Maximum: the broker's own
        # in-flight limit (Mosquitto max_inflight_messages) bounds the work instead.
        self.link = Link(
            parsed,
            SessionOptions(client_id=client_id, keepalive_s=keepalive_s, session_expiry_s=session_expiry_s,
                           receive_maximum=receive_maximum, manual_ack=True),
            subscriptions=subscriptions, on_message=self._on_message, on_state=self._on_state,
            on_error=lambda where: metrics.loop_errors.labels(where).inc(), log=logger, name="MQTT",
        )

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, sink: Sink | None = None) -> None:
        """``sink`` receives every message (None: a publish-only link, no subscriptions)."""
        if sink is None and self.link.subscriptions:
            raise ConfigError("an MQTT link with subscriptions needs a sink")
        self._sink = sink
        self.link.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Let queued PUBACKs and watermark publishes out, then disconnect."""
        self.link.stopping = True
        deadline = time.monotonic() + timeout_s
        # paho keeps QoS 1 publishes in _out_messages until PUBACKed; wait for the last ones.
        for info in list(self._last_publishes):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.link.connected:
                break
            try:
                info.wait_for_publish(timeout=remaining)
            except (RuntimeError, ValueError):
                break
        self.link.stop()

    # --- the link's callbacks (network thread) ---------------------------------------------

    def _on_state(self, connected: bool, _generation: int) -> None:
        if self._gauge:
            self._metrics.broker_connected.set(1 if connected else 0)
        if connected:
            self._reconnected.set()

    def _on_message(self, message: mqtt.MQTTMessage, generation: int) -> None:
        assert self._sink is not None  # nothing is subscribed without one
        self._sink(Inbound(message.topic, bytes(message.payload), message.mid, message.qos,
                           generation, time.time(), time.monotonic()))

    # --- used by the writer thread ---------------------------------------------------------

    def take_reconnected(self) -> bool:
        if self._reconnected.is_set():
            self._reconnected.clear()
            return True
        return False

    def publish_watermarks(self, marks: dict[str, int], site_of: Callable[[str], str | None]) -> int:
        """Retained ``{"v":1,"seq":N}`` on each gateway's ack topic; only while connected (all
        of them are republished after every reconnect, so nothing piles up in paho)."""
        if not self.link.connected:
            return 0
        infos = []
        for gateway, seq in marks.items():
            site = site_of(gateway)
            if site is None:
                continue
            infos.append(self.link.publish(topics.ack(site, gateway), encode(Ack(v=1, seq=seq)),
                                           qos=1, retain=True))
        self._last_publishes = infos
        return len(infos)
