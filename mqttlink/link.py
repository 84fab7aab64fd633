"""One long-lived MQTT link: failover over a list of brokers, a persistent session, its
subscriptions restored on every connect, and manual acks bound to their connection.

Used by the ingest's MQTT source (``ingest/mqtt_source.py``), the ops service's subscription
(``ops_center/service/mqtt.py``) and the API's command link (``ops_center/commands/link.py``);
what differs between them (client id, session options, filters, what a message becomes) is a
parameter.

- paho reconnects on its own, 1 s doubling to 10 s between attempts, but always to the same
  host: on a failed attempt or a lost connection the link aims the next attempt at the next
  URL of the list (in order, round and round);
- on every connect the link subscribes again (QoS 1; a resumed session replaces the same
  subscription, MQTT-3.8.4-3) and sets :attr:`Link.subscribed` once the broker granted them
  (SUBACK), at once when there is nothing to subscribe; it is cleared while disconnected;
- the paho callbacks never raise (an exception would kill paho's network thread,
  docs/reliability.md): a failure is logged and reported to ``on_error`` with its place.

A packet identifier means something only on the connection that delivered it: after a
reconnect the broker redelivers every unacknowledged message and may reuse an identifier for
a *new* one once the old is acknowledged, so acking a message of an earlier connection could
acknowledge another, uncommitted one. Every message carries the connection generation it came
on (the generation changes on every connect and disconnect), and :meth:`Link.ack` acks only
those of the current one (the others come again on the new connection and are acked then).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract.brokers import BrokerUrl
from mqttlink.client import (
    RECONNECT_MAX_DELAY_S,
    RECONNECT_MIN_DELAY_S,
    SessionOptions,
    connect,
    new_client,
    set_credentials,
    url_set_problem,
)

MessageSink = Callable[[mqtt.MQTTMessage, int], None]  # (message, connection generation)
StateSink = Callable[[bool, int], None]  # (connected, connection generation)


class Ackable(Protocol):
    """What :meth:`Link.ack` needs of a delivered message."""

    @property
    def mid(self) -> int: ...

    @property
    def qos(self) -> int: ...

    @property
    def generation(self) -> int: ...


class Link:
    """One paho client failing over along ``urls``, subscribing to ``subscriptions``.

    ``on_message`` gets each message with the generation of its connection (paho's network
    thread: it must only hand the message over, never block on work); ``on_state`` every
    connect and disconnect; ``on_error`` the place of a callback that raised (to count it).
    ``log`` is the owner's logger and ``name`` its words, so the lines keep the owner's name.
    """

    def __init__(
        self,
        urls: Sequence[BrokerUrl],
        options: SessionOptions,
        *,
        subscriptions: Sequence[str] = (),
        on_message: MessageSink | None = None,
        on_state: StateSink | None = None,
        on_error: Callable[[str], None] | None = None,
        log: logging.Logger,
        name: str = "MQTT link",
    ) -> None:
        problem = url_set_problem(urls)
        if problem is not None:
            raise ValueError(problem)
        if subscriptions and on_message is None:
            raise ValueError("an MQTT link with subscriptions needs a message sink")
        self.urls = list(urls)
        self.mqtt5 = self.urls[0].mqtt5
        self.options = options
        self.subscriptions = list(subscriptions)
        self._on_message_sink = on_message
        self._on_state = on_state
        self._on_error = on_error
        self._log = log
        self._name = name
        self._index = 0
        self.stopping = False
        # Guards generation/connected against acks in flight: an ack never crosses connections.
        self._lock = threading.Lock()
        self.generation = 0
        self.connected = False
        self.subscribed = threading.Event()
        c = new_client(self.urls[0], options)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY_S, max_delay=RECONNECT_MAX_DELAY_S)
        self.client = c

    @property
    def url(self) -> BrokerUrl:
        """The broker of the current (or next) attempt."""
        return self.urls[self._index]

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (the broker may be down: paho keeps trying)."""
        self.stopping = False
        self._connect_async()
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect (a persistent session stays on the broker for its expiry) and stop the
        network thread; what is not acknowledged comes again to the next session."""
        self.stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            self.connected = False

    def _connect_async(self) -> None:
        set_credentials(self.client, self.url)
        connect(self.client, self.url, self.options, background=True)

    def _rotate(self) -> None:
        """Aim the next reconnect at the next broker of the list (paho retries one host only)."""
        if self.stopping or len(self.urls) == 1:
            return
        self._index = (self._index + 1) % len(self.urls)
        self._log.info("MQTT failover: next attempt on %s", self.url)
        self._connect_async()

    # --- the owner's side --------------------------------------------------------------------

    def ack(self, messages: Iterable[Ackable]) -> int:
        """PUBACK, in the given order, every QoS 1 message of the current connection (the
        others are redelivered); returns how many PUBACKs were handed to paho."""
        n = 0
        with self._lock:
            if not self.connected:
                return 0
            for m in messages:
                if m.qos and m.generation == self.generation and \
                        self.client.ack(m.mid, m.qos) == mqtt.MQTT_ERR_SUCCESS:
                    n += 1
        return n

    def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    # --- paho callbacks (network thread: never raise) --------------------------------------

    def _failed(self, where: str, consequence: str = "") -> None:
        self._log.exception("%s %s failed%s", self._name, where, consequence)
        if self._on_error is not None:
            try:
                self._on_error(where)
            except Exception:
                self._log.exception("%s: counting an error failed", self._name)

    def _state(self, connected: bool, generation: int) -> None:
        if self._on_state is not None:
            self._on_state(connected, generation)

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        try:
            if reason_code.is_failure:
                self._log.warning("%s refused by %s: %s", self._name, self.url, reason_code)
                return
            with self._lock:
                self.generation += 1
                self.connected = True
                generation = self.generation
            self._log.info("%s connected to %s (session present: %s)", self._name, self.url,
                           getattr(flags, "session_present", "?"))
            self._state(True, generation)
            if not self.subscriptions:
                self.subscribed.set()
            elif self.mqtt5:
                client.subscribe([(s, SubscribeOptions(qos=1)) for s in self.subscriptions])
            else:  # paho takes a plain QoS for MQTT 3.1.1 subscriptions
                client.subscribe([(s, 1) for s in self.subscriptions])
        except Exception:
            self._failed("on_connect")

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reason_codes: Any, _p: Any) -> None:
        try:
            refused = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
            if refused:
                self._log.error("%s: subscription refused by %s: %s (check the broker's ACL)",
                                self._name, self.url, refused)
                return
            self.subscribed.set()
        except Exception:
            self._failed("on_subscribe")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        try:
            with self._lock:
                self.generation += 1
                was = self.connected
                self.connected = False
                generation = self.generation
            self.subscribed.clear()
            if was and not self.stopping:
                self._log.warning("%s disconnected from %s: %s", self._name, self.url, reason_code)
            self._state(False, generation)
            self._rotate()
        except Exception:
            self._failed("on_disconnect")

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        try:
            self._log.debug("%s: connect to %s failed", self._name, self.url)
            self._rotate()
        except Exception:
            self._failed("on_connect_fail")

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            assert self._on_message_sink is not None  # nothing is subscribed without one
            self._on_message_sink(message, self.generation)
        except Exception:
            self._failed("on_message", "; the message stays unacknowledged and comes back")


class OverLink:
    """For a class that owns one :class:`Link` as ``self.link``: its state and acks read through."""

    link: Link

    @property
    def subscribed(self) -> threading.Event:
        """Set once the broker granted the subscriptions (SUBACK); cleared while disconnected."""
        return self.link.subscribed

    @property
    def client(self) -> mqtt.Client:
        return self.link.client

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def generation(self) -> int:
        return self.link.generation

    def ack(self, messages: Iterable[Ackable]) -> int:
        """PUBACK every QoS 1 message of the current connection; returns how many."""
        return self.link.ack(messages)
