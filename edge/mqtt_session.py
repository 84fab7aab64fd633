"""One broker connection of :class:`edge.mqtt_publisher.MqttPublisher`: its paho client, the
PUBLISHes awaiting PUBACK, and how a connection is cut when a clean DISCONNECT cannot be sent."""

from __future__ import annotations

import contextlib
import socket
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from contract.brokers import BrokerUrl

# MQTT 5 DISCONNECT reason 0x04: the broker publishes our Will (MQTT-3.14.2.1).
DISCONNECT_WITH_WILL = 4
# A connection that lived shorter than this counts as a failed attempt for the back-off
# (a broker that accepts and drops at once, or another agent taking over our client id).
STABLE_S = 10.0


class Session:
    """One broker connection: its paho client and the PUBLISHes awaiting PUBACK."""

    def __init__(self, url: BrokerUrl, client: mqtt.Client) -> None:
        self.url = url
        self.client = client
        self.connack: ReasonCode | None = None
        self.session_present = False
        self.closed = False
        self.close_reason = ""
        self.lock = threading.Lock()
        # mid -> batch seq, an Event to set (the final status) or None (a status). Bounded by
        # the window (+ the statuses in flight).
        self.pending: dict[int, int | threading.Event | None] = {}
        # PUBACKs that arrived before publish() returned their mid to us (paho calls
        # on_publish from its thread, possibly before publish() returns in ours).
        self.early: dict[int, tuple[bool, str]] = {}
        self.unsubscribed = threading.Event()  # the UNSUBACK of the ack topic (clean stop)

    @property
    def ready(self) -> bool:
        return self.connack is not None and not self.connack.is_failure and not self.closed


def cut(client: mqtt.Client) -> None:
    """End the connection under paho without a DISCONNECT (shut the socket down)."""
    sock = client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
