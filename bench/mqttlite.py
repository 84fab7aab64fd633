"""A minimal MQTT 3.1.1 client on asyncio, for ``smartward bench gateways`` only.

Ten thousand gateways in one process need a client that costs one socket and one small object
per connection: paho (and aiomqtt on top of it) runs a socket loop per client, amqtt's client
starts several tasks and a plugin manager per connection. This one speaks the few packets a
gateway needs (CONNECT with a user name, SUBSCRIBE to its ack topic, QoS 1 PUBLISH and PUBACK
both ways, DISCONNECT); it is NOT a general client and the product never uses it (the edge
agent publishes with paho, edge/mqtt_publisher.py).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 13, 14


class ProtocolError(Exception):
    """The broker sent something this client does not expect."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, *, username: str | None = None, clean: bool = False,
                   keepalive_s: int = 120) -> bytes:
    flags = (0x80 if username is not None else 0) | (0x02 if clean else 0)
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive_s) + _str(client_id)
    if username is not None:
        body += _str(username)
    return packet(CONNECT << 4, body)


def publish_packet(topic: str, payload: bytes, packet_id: int, *, dup: bool = False) -> bytes:
    return packet((PUBLISH << 4) | 0x02 | (0x08 if dup else 0),
                  _str(topic) + struct.pack("!H", packet_id) + payload)


def subscribe_packet(topic: str, packet_id: int, qos: int = 1) -> bytes:
    return packet((SUBSCRIBE << 4) | 0x02, struct.pack("!H", packet_id) + _str(topic) + bytes([qos]))


def puback_packet(packet_id: int) -> bytes:
    return packet(PUBACK << 4, struct.pack("!H", packet_id))


DISCONNECT_PACKET = packet(DISCONNECT << 4, b"")


class MqttConnection(asyncio.Protocol):
    """One TCP connection. ``on_message(topic, payload)`` and ``on_puback(packet_id)`` are
    called from the event loop; ``connack`` resolves with the return code; ``closed`` when the
    socket is gone (by either side)."""

    def __init__(self, on_message: Callable[[str, bytes], None], on_puback: Callable[[int], None]) -> None:
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._on_message = on_message
        self._on_puback = on_puback
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.connack.done():
            self.connack.set_exception(ConnectionError("closed before CONNACK"))
            self.connack.exception()  # retrieved: a caller that gave up waiting must not be warned
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, data: bytes) -> bool:
        """False when the connection is already gone (the caller keeps the message)."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= 2:
            length, mult, i = 0, 1, 1
            while True:
                if i >= len(buf):
                    return  # the length itself is incomplete
                byte = buf[i]
                length += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
            if len(buf) < i + length:
                return
            first, body = buf[0], bytes(buf[i:i + length])
            del buf[:i + length]
            try:
                self._dispatch(first, body)
            except (ProtocolError, struct.error, UnicodeDecodeError):
                self.close()
                return

    def _dispatch(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == CONNACK:
            if not self.connack.done():
                self.connack.set_result(body[1])
        elif kind == PUBACK:
            self._on_puback(struct.unpack("!H", body[:2])[0])
        elif kind == PUBLISH:
            qos = (first >> 1) & 3
            (n,) = struct.unpack("!H", body[:2])
            topic = body[2:2 + n].decode()
            rest = body[2 + n:]
            if qos:
                (pid,) = struct.unpack("!H", rest[:2])
                rest = rest[2:]
                self.send(puback_packet(pid))
            self._on_message(topic, rest)
        elif kind in (SUBACK, PINGRESP):
            return
        else:
            raise ProtocolError(f"unexpected packet type {kind}")
