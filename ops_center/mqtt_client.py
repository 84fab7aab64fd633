"""The paho client of the ops center's long-lived MQTT links, built in one place.

Used by the ops service's telemetry subscription (``ops_center/service/mqtt.py``) and the
API's command link (``ops_center/api/command_link.py``); what differs between them (client
id, keepalive, session expiry, Receive Maximum, manual acks, the callbacks) is a parameter.

- ``CallbackAPIVersion.VERSION2`` callbacks;
- a persistent session: MQTT 5 ``clean_start=False`` with a Session Expiry Interval
  (MQTT-3.1.2.11.2), so the broker keeps the subscriptions and queues QoS 1 messages while
  the client is away; with ``?protocol=3.1.1`` in the URL ``clean_session=False``
  (MQTT-3.1.2-4), the broker's own expiry then applies (Mosquitto
  ``persistent_client_expiration``);
- paho reconnects on its own, 1 s doubling to 10 s between attempts, but always to the same
  host: on a failed attempt or a lost connection the owner calls :meth:`BrokerClient.rotate`
  and the next attempt goes to the next URL of the list (in order, round and round);
- TLS when the URLs are ``mqtts://`` (they must all agree: :func:`url_set_problem`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.brokers import BrokerUrl

RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 10


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What one link asks of its broker session."""

    client_id: str
    keepalive_s: int
    # MQTT 5 Session Expiry Interval: how long the broker keeps the session (subscriptions,
    # queued QoS 1 messages) after the connection ends. Not sent over MQTT 3.1.1.
    session_expiry_s: int
    # MQTT 5 Receive Maximum (MQTT-3.1.2.11.3): unacknowledged QoS 1 messages the broker may
    # have out to us; None: not sent (the protocol's 65,535).
    receive_maximum: int | None = None
    # True: a PUBACK leaves only when the owner calls ``client.ack`` (paho ``manual_ack``).
    manual_ack: bool = False


def url_set_problem(urls: Sequence[BrokerUrl]) -> str | None:
    """Why this failover list cannot work with one client (TLS and the protocol are set on
    the client once, from the first URL), or None."""
    if not urls:
        return "no MQTT URL"
    if len({u.tls for u in urls}) > 1:
        return "all MQTT URLs must use the same scheme (mqtt:// or mqtts://)"
    if len({u.protocol for u in urls}) > 1:
        return "all MQTT URLs must use the same protocol (5 or 3.1.1)"
    return None


class BrokerClient:
    """One paho client with a persistent session, failing over along ``urls``.

    The owner passes its callbacks (paho's network thread calls them; they must never
    raise) and calls :meth:`rotate` from its ``on_disconnect`` and ``on_connect_fail``.
    ``log`` is the owner's logger, so the failover lines keep the owner's name.
    """

    def __init__(
        self,
        urls: Sequence[BrokerUrl],
        options: SessionOptions,
        *,
        log: logging.Logger,
        on_connect: mqtt.CallbackOnConnect_v2,
        on_disconnect: mqtt.CallbackOnDisconnect_v2,
        on_connect_fail: mqtt.CallbackOnConnectFail,
        on_subscribe: mqtt.CallbackOnSubscribe_v2,
        on_message: mqtt.CallbackOnMessage,
    ) -> None:
        problem = url_set_problem(urls)
        if problem is not None:
            raise ValueError(problem)
        self.urls = list(urls)
        self.mqtt5 = self.urls[0].mqtt5
        self._index = 0
        self._log = log
        self._keepalive_s = options.keepalive_s
        self.stopping = False
        self._props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if options.receive_maximum is not None:
            self._props.ReceiveMaximum = options.receive_maximum
        self._props.SessionExpiryInterval = options.session_expiry_s
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=options.client_id,
                        protocol=mqtt.MQTTv5 if self.mqtt5 else mqtt.MQTTv311,
                        # MQTT 5 takes clean_start per connect (below); 3.1.1 sets it here.
                        clean_session=None if self.mqtt5 else False, manual_ack=options.manual_ack)
        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.on_connect_fail = on_connect_fail
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        c.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY_S, max_delay=RECONNECT_MAX_DELAY_S)
        if self.urls[0].tls:
            c.tls_set()
        self.client = c

    @property
    def url(self) -> BrokerUrl:
        """The broker of the current (or next) attempt."""
        return self.urls[self._index]

    def start(self) -> None:
        """Connect in the background (the broker may be down: paho keeps trying)."""
        self.stopping = False
        self._connect_async(self.url)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect (the session stays on the broker for its expiry) and stop the thread."""
        self.stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def rotate(self) -> None:
        """Aim the next reconnect at the next broker of the list (paho retries one host only)."""
        if self.stopping or len(self.urls) == 1:
            return
        self._index = (self._index + 1) % len(self.urls)
        self._log.info("MQTT failover: next attempt on %s", self.url)
        self._connect_async(self.url)

    def _connect_async(self, url: BrokerUrl) -> None:
        self.client.username_pw_set(url.username, url.password)
        if self.mqtt5:
            self.client.connect_async(url.host, url.port, keepalive=self._keepalive_s, clean_start=False,
                                      properties=self._props)
        else:  # the session persists through clean_session=False, set on the client
            self.client.connect_async(url.host, url.port, keepalive=self._keepalive_s)
