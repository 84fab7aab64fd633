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

The paho client itself (session options, reconnect back-off, TLS, failover over the URLs of
``SMARTWARD_MQTT_URL``) comes from ``ops_center/mqtt_client.py``, shared with the API's
command link.

A packet identifier means something only on the connection that delivered it: every message
carries the connection generation it came on, and only current-generation messages are acked
(earlier ones are redelivered on the new connection and acked then).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract import topics
from contract.brokers import BrokerUrl, BrokerUrlError
from ops_center.mqtt_client import BrokerClient, SessionOptions, url_set_problem
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


class OpsMqttLink:
    """paho client: failover over several brokers, subscriptions, generation-checked acks."""

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
        self._lock = threading.Lock()
        self.generation = 0
        self.connected = False
        self.accepting = True  # False: new messages are left unacked (redelivered later)
        self.subscribed = threading.Event()  # the broker granted the subscriptions (SUBACK)
        self.received = 0
        self.callback_errors = 0
        self._broker = BrokerClient(
            parsed,
            SessionOptions(client_id=client_id, keepalive_s=keepalive_s, session_expiry_s=session_expiry_s,
                           receive_maximum=receive_maximum, manual_ack=True),
            log=logger, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            on_connect_fail=self._on_connect_fail, on_subscribe=self._on_subscribe,
            on_message=self._on_message,
        )
        self._mqtt5 = self._broker.mqtt5
        self.client = self._broker.client

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._broker.start()

    def stop(self) -> None:
        """Disconnect (the session stays on the broker for its expiry) and stop the thread."""
        self.accepting = False
        self._broker.stop()
        with self._lock:
            self.connected = False

    def _set_state(self, connected: bool) -> None:
        if self._on_state is not None:
            self._on_state(connected)

    # --- paho callbacks (network thread: never raise) --------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        try:
            if reason_code.is_failure:
                logger.warning("MQTT connect refused by %s: %s", self._broker.url, reason_code)
                return
            with self._lock:
                self.generation += 1
                self.connected = True
            logger.info("ops service connected to %s (session present: %s)", self._broker.url,
                        getattr(flags, "session_present", "?"))
            filters = (topics.subscription("telemetry"), topics.subscription("senml"),
                       topics.subscription("status"))
            if self._mqtt5:
                client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
            else:  # paho takes a plain QoS for MQTT 3.1.1 subscriptions
                client.subscribe([(f, 1) for f in filters])
            self._set_state(True)
        except Exception:
            self.callback_errors += 1
            logger.exception("on_connect failed")

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reason_codes: Any, _p: Any) -> None:
        try:
            failed = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
            if failed:
                logger.error("subscription refused by the broker: %s", failed)
                return
            self.subscribed.set()
        except Exception:
            self.callback_errors += 1
            logger.exception("on_subscribe failed")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        try:
            with self._lock:
                self.generation += 1
                was = self.connected
                self.connected = False
            self.subscribed.clear()
            if was and not self._broker.stopping:
                logger.warning("ops service disconnected from %s: %s", self._broker.url, reason_code)
            self._set_state(False)
            self._broker.rotate()
        except Exception:
            self.callback_errors += 1
            logger.exception("on_disconnect failed")

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        try:
            logger.debug("MQTT connect to %s failed", self._broker.url)
            self._broker.rotate()
        except Exception:
            self.callback_errors += 1
            logger.exception("on_connect_fail failed")

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if not self.accepting:
                return  # stopping: left unacked, the broker redelivers it to the next session
            self.received += 1
            self._sink(Inbound(message.topic, bytes(message.payload), message.mid, message.qos,
                               bool(message.retain), bool(message.dup), self.generation,
                               datetime.now(UTC), time.monotonic()))
        except Exception:
            self.callback_errors += 1
            logger.exception("on_message failed; the message stays unacknowledged and comes back")

    # --- the worker's side -------------------------------------------------------------------

    def ack(self, messages: Sequence[Inbound]) -> int:
        """PUBACK every QoS 1 message of the current connection; returns how many."""
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
