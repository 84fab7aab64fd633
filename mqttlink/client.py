"""The paho client, built in one place (docs/design.md "Components", ``mqttlink/``).

- ``CallbackAPIVersion.VERSION2`` callbacks;
- MQTT 5 by default, MQTT 3.1.1 with ``?protocol=3.1.1`` in the URL (contract/brokers.py);
- a persistent session when asked: MQTT 5 ``clean_start=False`` with a Session Expiry Interval
  (MQTT-3.1.2.11.2), so the broker keeps the subscriptions and queues QoS 1 messages while the
  client is away; over MQTT 3.1.1 ``clean_session=False`` (MQTT-3.1.2-4), the broker's own
  expiry then applies (Mosquitto ``persistent_client_expiration``);
- MQTT 5 Receive Maximum (MQTT-3.1.2.11.3) when given: the unacknowledged QoS 1 messages the
  broker may have out to us (3.1.1 has none: the broker's in-flight limit plays that role);
- the URL's user name and password; TLS for ``mqtts://`` (with the system's CAs, or a CA file).
"""

from __future__ import annotations

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
    keepalive_s: int = 60
    # MQTT 5 Session Expiry Interval: how long the broker keeps the session (subscriptions,
    # queued QoS 1 messages) after the connection ends; None: a clean session, nothing kept.
    session_expiry_s: int | None = None
    # MQTT 5 Receive Maximum; None: not sent (the protocol's 65,535).
    receive_maximum: int | None = None
    # True: a PUBACK leaves only when the owner calls ``client.ack`` (paho ``manual_ack``).
    manual_ack: bool = False

    @property
    def persistent(self) -> bool:
        return self.session_expiry_s is not None


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


def new_client(url: BrokerUrl, options: SessionOptions, *, ca_file: str | None = None,
               default_username: str | None = None, reconnect_on_failure: bool = True) -> mqtt.Client:
    """A paho client for ``url`` (its protocol, TLS and credentials; ``default_username``
    when the URL names none); not connected yet."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=options.client_id,
                    protocol=mqtt.MQTTv5 if url.mqtt5 else mqtt.MQTTv311,
                    # MQTT 5 takes clean_start per connect (connect_args); 3.1.1 sets it here.
                    clean_session=None if url.mqtt5 else not options.persistent,
                    manual_ack=options.manual_ack, reconnect_on_failure=reconnect_on_failure)
    set_credentials(c, url, default_username)
    if url.tls:
        c.tls_set(ca_certs=ca_file)
    return c


def set_credentials(client: mqtt.Client, url: BrokerUrl, default_username: str | None = None) -> None:
    """The URL's user name and password (``default_username`` when the URL names none); set
    before every attempt, since the brokers of a failover list may hold other accounts."""
    client.username_pw_set(url.username or default_username, url.password)


def connect_properties(options: SessionOptions) -> Properties:
    """MQTT 5 CONNECT properties: Session Expiry Interval and Receive Maximum, when set."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if options.session_expiry_s is not None:
        props.SessionExpiryInterval = options.session_expiry_s
    if options.receive_maximum is not None:
        props.ReceiveMaximum = options.receive_maximum
    return props


def connect(client: mqtt.Client, url: BrokerUrl, options: SessionOptions, *,
            background: bool = False) -> None:
    """CONNECT ``client`` to ``url`` (``background``: ``connect_async``, paho's loop connects).
    Over MQTT 5 the session is chosen here (``clean_start`` + properties); over 3.1.1 it was
    chosen by ``clean_session`` when the client was built."""
    go = client.connect_async if background else client.connect
    if url.mqtt5:
        go(url.host, url.port, keepalive=options.keepalive_s, clean_start=not options.persistent,
           properties=connect_properties(options))
    else:
        go(url.host, url.port, keepalive=options.keepalive_s)


def connected_client(url: BrokerUrl, options: SessionOptions, *, ca_file: str | None = None) -> mqtt.Client:
    """A client connected (blocking CONNECT; call ``loop_start`` next) to ``url``: for short
    helpers and benchmarks that need no failover."""
    c = new_client(url, options, ca_file=ca_file)
    connect(c, url, options)
    return c
