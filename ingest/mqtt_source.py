"""The MQTT adapter of the ingest's source port (ingest/source.py), and its ack publisher.

One paho client: failover over several brokers, a persistent session, subscriptions (shared, for
several workers), manual acks after commit checked against the connection generation, and
retained ack watermarks. With the AMQP source the same class, without subscriptions, only
publishes the watermarks.

PUBACK and reconnects: a packet identifier is only meaningful on the connection that delivered
it. After a reconnect the broker redelivers every unacknowledged message and may reuse an
identifier for a *new* message once the old one is acknowledged, so acking a message that came
on an earlier connection could acknowledge a different, uncommitted one. Every message carries
the connection generation it arrived on, and only current-generation messages are acked (the
earlier ones are redelivered on the new connection and acked then, as duplicates).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract import topics
from contract.brokers import BrokerUrl, BrokerUrlError
from contract.codec import encode
from contract.models import Ack
from ingest.errors import IngestError
from ingest.metrics import IngestMetrics
from ingest.source import Inbound, Sink

logger = logging.getLogger(__name__)


class ConfigError(IngestError):
    """Settings that cannot work (bad broker URL, mixed TLS and plain URLs)."""


def parse_broker_url(url: str) -> BrokerUrl:
    try:
        return BrokerUrl.parse(url)
    except BrokerUrlError as exc:
        raise ConfigError(str(exc)) from exc



class MqttLink:
    """The paho client: failover over several brokers, subscriptions, generation-checked acks.

    A ``Source`` (with subscriptions) and an ``AckPublisher`` (ingest/source.py)."""

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
        if not urls:
            raise ConfigError("no MQTT URL")
        self._urls = [parse_broker_url(u) for u in urls]
        if len({u.tls for u in self._urls}) > 1:
            raise ConfigError("all MQTT URLs must use the same scheme (mqtt:// or mqtts://)")
        if len({u.protocol for u in self._urls}) > 1:
            raise ConfigError("all MQTT URLs must use the same protocol (5 or 3.1.1)")
        mqtt5 = self._urls[0].mqtt5
        self._url_index = 0
        self._subscriptions = list(subscriptions)
        self._sink: Sink | None = None
        self._metrics = metrics
        self._gauge = connection_gauge
        self._keepalive_s = keepalive_s
        self._stopping = False
        self._lock = threading.Lock()  # guards generation/connected against acks in flight
        self.generation = 0
        self.connected = False
        self.subscribed = threading.Event()  # SUBACK granted every subscription
        self._reconnected = threading.Event()
        self._last_publishes: list[mqtt.MQTTMessageInfo] = []
        self._connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        self._connect_props.ReceiveMaximum = receive_maximum
        self._connect_props.SessionExpiryInterval = session_expiry_s

        # MQTT 3.1.1 (``?protocol=3.1.1``) has no Receive Maximum: the broker's own
        # in-flight limit (Mosquitto max_inflight_messages) bounds the work instead.
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
                        clean_session=None if mqtt5 else False, manual_ack=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        if self._urls[0].tls:
            c.tls_set()
        self.client = c

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, sink: Sink | None = None) -> None:
        """``sink`` receives every message (None: a publish-only link, no subscriptions)."""
        if sink is None and self._subscriptions:
            raise ConfigError("an MQTT link with subscriptions needs a sink")
        self._sink = sink
        self._connect_async(self._urls[0])
        self.client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Let queued PUBACKs and watermark publishes out, then disconnect."""
        self._stopping = True
        deadline = time.monotonic() + timeout_s
        # paho keeps QoS 1 publishes in _out_messages until PUBACKed; wait for the last ones.
        for info in list(self._last_publishes):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.connected:
                break
            try:
                info.wait_for_publish(timeout=remaining)
            except (RuntimeError, ValueError):
                break
        self.client.disconnect()
        self.client.loop_stop()

    def _connect_async(self, url: BrokerUrl) -> None:
        self.client.username_pw_set(url.username, url.password)
        if url.mqtt5:
            self.client.connect_async(url.host, url.port, keepalive=self._keepalive_s,
                                      clean_start=False, properties=self._connect_props)
        else:
            self.client.connect_async(url.host, url.port, keepalive=self._keepalive_s)

    def _rotate(self) -> None:
        """Next broker of the list for the next reconnect (paho itself retries one host only)."""
        if self._stopping or len(self._urls) == 1:
            return
        self._url_index = (self._url_index + 1) % len(self._urls)
        url = self._urls[self._url_index]
        logger.info("MQTT failover: next attempt on %s", url)
        self._connect_async(url)

    # --- paho callbacks (network thread: must never raise) ---------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        try:
            if reason_code.is_failure:
                logger.warning("MQTT connect refused by %s: %s", self._urls[self._url_index], reason_code)
                return
            with self._lock:
                self.generation += 1
                self.connected = True
            if self._gauge:
                self._metrics.broker_connected.set(1)
            logger.info("MQTT connected to %s (session present: %s)", self._urls[self._url_index],
                        getattr(flags, "session_present", "?"))
            if not self._subscriptions:
                self.subscribed.set()
            elif self._urls[0].mqtt5:
                client.subscribe([(s, SubscribeOptions(qos=1)) for s in self._subscriptions])
            else:  # paho takes a plain QoS for MQTT 3.1.1 subscriptions
                client.subscribe([(s, 1) for s in self._subscriptions])
            self._reconnected.set()
        except Exception:
            logger.exception("on_connect failed")
            self._metrics.loop_errors.labels("on_connect").inc()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        try:
            with self._lock:
                self.generation += 1
                was = self.connected
                self.connected = False
            self.subscribed.clear()
            if self._gauge:
                self._metrics.broker_connected.set(0)
            if was and not self._stopping:
                logger.warning("MQTT disconnected from %s: %s", self._urls[self._url_index], reason_code)
            self._rotate()
        except Exception:
            logger.exception("on_disconnect failed")
            self._metrics.loop_errors.labels("on_disconnect").inc()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        try:
            logger.debug("MQTT connect to %s failed", self._urls[self._url_index])
            self._rotate()
        except Exception:
            logger.exception("on_connect_fail failed")
            self._metrics.loop_errors.labels("on_connect_fail").inc()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        try:
            refused = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
            if refused:
                logger.error("MQTT subscription refused by %s: %s (check the broker's ACL)",
                             self._urls[self._url_index], refused)
                return
            self.subscribed.set()
        except Exception:
            logger.exception("on_subscribe failed")
            self._metrics.loop_errors.labels("on_subscribe").inc()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # An exception here would kill paho's network thread (docs/reliability.md): catch all.
        try:
            assert self._sink is not None  # nothing is subscribed without one
            self._sink(Inbound(message.topic, bytes(message.payload), message.mid, message.qos,
                               self.generation, time.time(), time.monotonic()))
        except Exception:
            logger.exception("on_message failed; the message stays unacknowledged and comes back")
            self._metrics.loop_errors.labels("on_message").inc()

    # --- used by the writer thread ---------------------------------------------------------

    def take_reconnected(self) -> bool:
        if self._reconnected.is_set():
            self._reconnected.clear()
            return True
        return False

    def ack(self, messages: Sequence[Inbound]) -> int:
        """PUBACK every message that came on the current connection; returns how many."""
        n = 0
        with self._lock:
            if not self.connected:
                return 0
            gen = self.generation
            for m in messages:
                if m.qos and m.generation == gen:
                    self.client.ack(m.mid, m.qos)
                    n += 1
        return n

    def publish_watermarks(self, marks: dict[str, int], site_of: Callable[[str], str | None]) -> int:
        """Retained ``{"v":1,"seq":N}`` on each gateway's ack topic; only while connected (all
        of them are republished after every reconnect, so nothing piles up in paho)."""
        if not self.connected:
            return 0
        infos = []
        for gateway, seq in marks.items():
            site = site_of(gateway)
            if site is None:
                continue
            infos.append(self.client.publish(topics.ack(site, gateway), encode(Ack(v=1, seq=seq)),
                                             qos=1, retain=True))
        self._last_publishes = infos
        return len(infos)

