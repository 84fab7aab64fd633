"""The AMQP adapter of the ingest's source port: a RabbitMQ quorum queue, consumed with pika.

Gateways publish over MQTT to any node of a RabbitMQ cluster; the broker's MQTT plugin turns
``smartward/v1/{site}/{gw}/telemetry`` into the routing key ``smartward.v1.{site}.{gw}.telemetry``
on ``amq.topic``. The ingest declares (idempotently) one durable quorum queue bound to the
telemetry, SenML and status keys, and N workers consume it as competing consumers
(docs/contract.md "Scale-out and high availability"; docs/scale-out.md).

- **Any node may serve**: the URL lists the nodes; on a lost connection the next one is tried
  (round robin, with a short backoff). A quorum queue keeps serving while a majority of its
  members is up, whichever node the client reached.
- **Acks after commit**: ``auto_ack=False``; the writer acks each message (``multiple=False``,
  in commit order) after its transaction. A delivery tag is only meaningful on the channel that
  delivered it, so each message carries the channel generation and only current-generation
  messages are acked (like the MQTT generation check): after a reconnect the broker redelivers
  the rest, and the store's ``(gateway, seq)`` turns them into duplicates.
- **Backpressure**: ``basic.qos(prefetch_count)`` = the worker's Receive Maximum: the broker has
  at most that many unacknowledged messages out to this worker.

pika's BlockingConnection is not thread-safe: it lives on this adapter's own thread, and the
writer's acks reach it through ``add_callback_threadsafe``.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pika
import pika.exceptions

from ingest.errors import IngestError
from ingest.metrics import IngestMetrics
from ingest.source import Inbound, Sink

logger = logging.getLogger(__name__)

EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes (mqtt.exchange)
DEFAULT_QUEUE = "smartward.telemetry"
# The MQTT plugin maps "/" to "." ("smartward/v1/+/+/telemetry" → "smartward.v1.*.*.telemetry").
ROUTING_KEYS = ("smartward.v1.*.*.telemetry", "smartward.v1.*.*.senml", "smartward.v1.*.*.status")
_POLL_S = 0.2  # the consumer thread wakes this often (stop requests, heartbeats)


class AmqpConfigError(IngestError):
    """An AMQP source URL that cannot work."""


@dataclass(frozen=True, slots=True)
class AmqpUrl:
    """``amqp[s]://user:pass@h1:5672,h2:5672/vhost?queue=NAME`` (vhost URL-encoded)."""

    hosts: tuple[tuple[str, int], ...]
    username: str
    password: str
    vhost: str
    queue: str
    tls: bool

    def __str__(self) -> str:  # never the password
        nodes = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"{'amqps' if self.tls else 'amqp'}://{self.username}@{nodes}/{self.vhost}?queue={self.queue}"


def parse_amqp_url(url: str) -> AmqpUrl:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("amqp", "amqps"):
        raise AmqpConfigError(
            "SMARTWARD_INGEST_SOURCE phải là mqtt hoặc amqp://… / must be mqtt or "
            "amqp://user:pass@h1:5672,h2:5672/vhost?queue=smartward.telemetry")
    tls = parts.scheme == "amqps"
    userinfo, sep, hostlist = parts.netloc.rpartition("@")
    if not sep:
        hostlist, userinfo = parts.netloc, ""
    user, _, password = userinfo.partition(":")
    hosts: list[tuple[str, int]] = []
    for raw in hostlist.split(","):
        node = raw.strip()
        if not node:
            continue
        host, colon, port_text = node.rpartition(":")
        if not colon:
            host, port_text = node, ""
        try:
            port = int(port_text) if port_text else (5671 if tls else 5672)
        except ValueError as exc:
            raise AmqpConfigError(f"AMQP URL: bad port in {node!r}") from exc
        if not host or not 0 < port < 65536:
            raise AmqpConfigError(f"AMQP URL: bad node {node!r}")
        hosts.append((host.strip("[]"), port))
    if not hosts:
        raise AmqpConfigError("AMQP URL: no host")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    queue = parse_qs(parts.query, keep_blank_values=True).get("queue", [DEFAULT_QUEUE])[0].strip()
    if not queue:
        raise AmqpConfigError("AMQP URL: empty queue name")
    return AmqpUrl(tuple(hosts), unquote(user) or "guest", unquote(password) or "guest",
                   vhost, queue, tls)


def declare(channel: Any, queue: str) -> None:
    """The quorum queue and its bindings, idempotently (an existing queue with other
    arguments is a configuration error the broker reports: PRECONDITION_FAILED)."""
    channel.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
    for key in ROUTING_KEYS:
        channel.queue_bind(queue=queue, exchange=EXCHANGE, routing_key=key)


def topic_of(routing_key: str) -> str:
    """The MQTT topic a routing key came from (our topic levels never contain "." or "/")."""
    return routing_key.replace(".", "/")


class AmqpSource:
    """Consumes the quorum queue on its own thread; a ``Source`` (ingest/source.py)."""

    def __init__(self, url: AmqpUrl, *, prefetch: int, heartbeat_s: int, metrics: IngestMetrics,
                 retry_max_s: float = 5.0) -> None:
        self.url = url
        self._prefetch = prefetch
        self._heartbeat_s = heartbeat_s
        self._metrics = metrics
        self._retry_max_s = retry_max_s
        self._sink: Sink | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # generation/connected/_conn against acks in flight
        self.generation = 0
        self._connected = False
        self._conn: Any = None
        self._channel: Any = None
        self._node = 0
        self.subscribed = threading.Event()
        self.connections = 0  # successful connections so far (tests, logs)
        self._thread = threading.Thread(target=self._run, name="ingest-amqp", daemon=True)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def node(self) -> tuple[str, int]:
        """The node this source talks to (or tries next)."""
        return self.url.hosts[self._node]

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """The consumer thread runs the acks already given, then closes the connection
        (the broker requeues whatever is still unacknowledged)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # --- consumer thread -------------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._serve()
                delay = 0.5
            except Exception as exc:  # every failure ends in a reconnect, never the thread
                if self._stopping.is_set():
                    break
                host, port = self.node
                logger.warning("AMQP source: %s:%d lost or refused (%s: %s); next node in %.1f s",
                               host, port, type(exc).__name__, exc, delay)
            finally:
                self._disconnected()
            if self._stopping.is_set():
                break
            self._node = (self._node + 1) % len(self.url.hosts)
            self._stopping.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._retry_max_s)

    def _parameters(self) -> pika.ConnectionParameters:
        host, port = self.node
        return pika.ConnectionParameters(
            host=host, port=port, virtual_host=self.url.vhost,
            credentials=pika.PlainCredentials(self.url.username, self.url.password),
            heartbeat=self._heartbeat_s, blocked_connection_timeout=max(60, 2 * self._heartbeat_s),
            connection_attempts=1, socket_timeout=5, stack_timeout=10,
            ssl_options=pika.SSLOptions(ssl.create_default_context(), host) if self.url.tls else None,
            client_properties={"connection_name": "smartward-ingest"})

    def _serve(self) -> None:
        conn = pika.BlockingConnection(self._parameters())
        try:
            channel = conn.channel()
            declare(channel, self.url.queue)
            channel.basic_qos(prefetch_count=self._prefetch)
            with self._lock:
                self.generation += 1
                gen = self.generation
                self._conn, self._channel = conn, channel
                self._connected = True
            channel.basic_consume(self.url.queue, lambda ch, method, props, body:
                                  self._on_message(method, body, gen), auto_ack=False)
            self.connections += 1
            self._metrics.broker_connected.set(1)
            self.subscribed.set()
            logger.info("AMQP source consuming %r on %s:%d (prefetch %d)", self.url.queue,
                        *self.node, self._prefetch)
            while not self._stopping.is_set():
                conn.process_data_events(time_limit=_POLL_S)
            conn.process_data_events(time_limit=0)  # the acks the writer gave last
        finally:
            with self._lock:
                self._connected = False
                self._conn = self._channel = None
            try:
                if conn.is_open:
                    conn.close()
            except Exception:  # closing a broken connection: nothing to save
                logger.debug("AMQP close failed", exc_info=True)

    def _disconnected(self) -> None:
        with self._lock:
            self.generation += 1
            self._connected = False
        self.subscribed.clear()
        self._metrics.broker_connected.set(0)

    def _on_message(self, method: Any, body: bytes, gen: int) -> None:
        # Runs on the consumer thread inside process_data_events: must never raise.
        try:
            assert self._sink is not None
            self._sink(Inbound(topic_of(method.routing_key), bytes(body), method.delivery_tag, 1,
                               gen, time.time(), time.monotonic()))
        except Exception:
            logger.exception("AMQP on_message failed; the message stays unacknowledged and comes back")
            self._metrics.loop_errors.labels("on_message").inc()

    # --- writer thread ---------------------------------------------------------------------

    def ack(self, messages: Sequence[Inbound]) -> int:
        """basic.ack each current-generation message, in order, on the consumer thread."""
        with self._lock:
            if not self._connected or self._conn is None:
                return 0
            gen, conn, channel = self.generation, self._conn, self._channel
            tags = [m.mid for m in messages if m.qos and m.generation == gen]
        if not tags:
            return 0

        def send() -> None:
            if self.generation != gen or not channel.is_open:
                return  # the channel went away: the broker redelivers these
            for tag in tags:
                channel.basic_ack(delivery_tag=tag, multiple=False)

        try:
            conn.add_callback_threadsafe(send)
        except Exception as exc:  # the connection closed meanwhile: redelivered, absorbed
            logger.debug("AMQP acks not sent (%s); they will be redelivered", exc)
            return 0
        return len(tags)
