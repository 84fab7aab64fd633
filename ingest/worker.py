"""The ingest worker: MQTT in, one writer thread, store transaction, then acks.

Threads and their jobs (the recorder pattern of Home Assistant: one writer fed by a bounded queue)::

    paho network thread ── on_message ──▶ bounded queue ──▶ writer thread
      (never raises, never touches           (≤ receive_maximum)   classify → store.write (ONE
       the store; only enqueues)                                   transaction) → PUBACK each message
                                                                   → retained ack watermarks

One writer, on purpose: a separate thread that classified the next flush while the writer
waited for the database was measured (docs/performance.md, "Ingest") and brought nothing — the
database backend is the serial part, and the extra thread cost ≈ 3 µs of CPU per message.

Delivery: QoS 1, persistent session (MQTT 5 ``clean_start=False`` + Session Expiry Interval,
MQTT-3.1.2.11.2), ``manual_ack=True``: a PUBACK leaves only after the transaction that holds the
message committed, so a crash at any point makes the broker redeliver; the store turns the
redelivery into a no-op by ``(gateway, seq)``.

Backpressure: the MQTT 5 Receive Maximum we send in CONNECT (MQTT-3.1.2.11.3) caps the
unacknowledged QoS 1 messages the broker has out to us; when the store is slow or down the writer
retries the same transaction with backoff and acks nothing, so the broker stops sending once that
window is full and keeps the rest in its own queue (size it: ``max_queued_messages`` in
deploy/mosquitto). The in-memory queue is therefore bounded by ``receive_maximum`` messages of at
most 256 KiB. (With MQTT 3.1.1 Mosquitto's ``max_inflight_messages`` plays that role; we speak 5.)

PUBACK and reconnects: a packet identifier is only meaningful on the connection that delivered
it. After a reconnect the broker redelivers every unacknowledged message and may reuse an
identifier for a *new* message once the old one is acknowledged, so acking a message that came
on an earlier connection could acknowledge a different, uncommitted one. Every message carries
the connection generation it arrived on, and only current-generation messages are acked (the
earlier ones are redelivered on the new connection and acked then, as duplicates).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract import topics
from contract.bounds import safe_text
from contract.brokers import BrokerUrl, BrokerUrlError
from contract.codec import decode_status, encode
from contract.errors import DecodeError, TopicError
from contract.models import Ack
from contract.registry import Registry
from ingest import containment, deadletters
from ingest.errors import IngestError, StoreError, StoreUnavailable
from ingest.metrics import IngestMetrics
from ingest.pipeline import TimeWindow, classify
from ingest.ports import DeadLetter, Store, ValidBatch, WriteResult
from ingest.senml import classify_senml, is_senml
from ingest.settings import IngestSettings
from ingest.watermarks import HandledSeqSource, WatermarkTracker

logger = logging.getLogger(__name__)

# The writer wakes at least this often when idle (store ping, watermark republish, gaps).
_IDLE_WAKE_S = 0.2


class ConfigError(IngestError):
    """Settings that cannot work (bad broker URL, mixed TLS and plain URLs)."""


def parse_broker_url(url: str) -> BrokerUrl:
    try:
        return BrokerUrl.parse(url)
    except BrokerUrlError as exc:
        raise ConfigError(str(exc)) from exc


@dataclass(slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: float  # time.time() on receipt
    received_mono: float  # time.monotonic() on receipt


@dataclass(slots=True)
class Flush:
    """Messages taken together and classified: one transaction."""

    items: list[Inbound]
    valid: list[ValidBatch] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # (gateway, dropped_through, received_at) from status messages; the writer keeps those
    # above the gateway's watermark.
    drops: list[tuple[str, int, datetime]] = field(default_factory=list)
    n_telemetry: int = 0
    in_flush_duplicates: int = 0
    acked: bool = False


class MqttLink:
    """The paho client: failover over several brokers, subscriptions, generation-checked acks."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        client_id: str,
        subscriptions: Sequence[str],
        sink: Callable[[Inbound], None],
        receive_maximum: int,
        session_expiry_s: int,
        keepalive_s: int,
        metrics: IngestMetrics,
    ) -> None:
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
        self._sink = sink
        self._metrics = metrics
        self._keepalive_s = keepalive_s
        self._stopping = False
        self._lock = threading.Lock()  # guards generation/connected against acks in flight
        self.generation = 0
        self.connected = False
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
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        if self._urls[0].tls:
            c.tls_set()
        self.client = c

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
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
            self._metrics.broker_connected.set(1)
            logger.info("MQTT connected to %s (session present: %s)", self._urls[self._url_index],
                        getattr(flags, "session_present", "?"))
            if self._urls[0].mqtt5:
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

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # An exception here would kill paho's network thread (docs/reliability.md): catch all.
        try:
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


class IngestWorker:
    """One ingest worker. A context manager: ``with IngestWorker(...) as w: w.wait()``."""

    def __init__(
        self,
        settings: IngestSettings,
        store: Store,
        registry: Registry,
        *,
        metrics: IngestMetrics | None = None,
        client_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.metrics = metrics if metrics is not None else IngestMetrics()
        self.window = TimeWindow(settings.window_past, settings.window_future)
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=settings.receive_maximum)
        self._stopping = threading.Event()
        self._writer_done = threading.Event()
        self.fatal: BaseException | None = None
        self._store_ok = False
        self._store_call_started: float | None = None  # monotonic start of the running store call
        self._started = False
        self._heartbeat = time.monotonic()
        self._last_store_contact = 0.0
        self._tracker = WatermarkTracker(max_pending=settings.watermark_pending_max)
        self._unsaved: dict[str, int] = {}
        self._gap_checked: dict[str, float] = {}
        self._handled_source = store if isinstance(store, HandledSeqSource) else None
        subs = [
            topics.subscription("telemetry", share_group=settings.share_group),
            topics.subscription("senml", share_group=settings.share_group),  # ingest/senml.py
            # Status is retained, and retained messages are not sent to shared subscriptions
            # (MQTT-4.8.2): every worker reads every status; record_dropped is idempotent.
            topics.subscription("status"),
        ]
        cid = client_id or settings.client_id or f"smartward-ingest-{socket.gethostname()}"
        self.link = MqttLink(
            settings.mqtt_urls, client_id=cid, subscriptions=subs, sink=self._enqueue,
            receive_maximum=settings.receive_maximum, session_expiry_s=settings.session_expiry_s,
            keepalive_s=settings.keepalive_s, metrics=self.metrics,
        )
        self._abandoned = False  # stopping with the store down: the rest stays unacked
        self._writer = threading.Thread(target=self._run_writer, name="ingest-writer", daemon=True)

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> IngestWorker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._started = True
        self._writer.start()
        self.link.start()

    def stop(self) -> None:
        """SIGTERM path: finish the current transaction, ack, publish watermarks, disconnect."""
        if not self._started:
            return
        self._stopping.set()
        budget = self.settings.stop_grace_s + self.settings.batch_max_ms / 1000 + 30
        self._writer.join(timeout=budget)
        self.link.stop()
        self._started = False
        logger.info("ingest worker stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the writer ends (stop() or a fatal error). True when it ended."""
        return self._writer_done.wait(timeout)

    # --- health ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.link.connected and self._store_ok and self.live and not self.stalled

    @property
    def stalled(self) -> bool:
        """A store call has been running longer than ``store_stall_s`` (a locked table, a
        saturated disk): not ready, although the database answers pings (RELIABILITY R7)."""
        started = self._store_call_started
        return started is not None and time.monotonic() - started > self.settings.store_stall_s

    @property
    def live(self) -> bool:
        if self.fatal is not None or self._writer_done.is_set():
            return False
        return time.monotonic() - self._heartbeat < self.settings.liveness_timeout_s

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def watermarks(self) -> dict[str, int]:
        return self._tracker.snapshot()

    # --- paho thread side ------------------------------------------------------------------

    def _enqueue(self, m: Inbound) -> None:
        # The broker never has more than receive_maximum unacked messages out to us, so this
        # blocks only against a broker that ignores Receive Maximum; blocking the network thread
        # is then the backpressure (TCP fills). When stopping, a message is left unacked: the
        # broker redelivers it to the next session.
        while not self._stopping.is_set():
            try:
                self._queue.put(m, timeout=0.5)
                return
            except queue.Full:
                continue

    # --- writer thread ---------------------------------------------------------------------

    def _run_writer(self) -> None:
        try:
            self._restore()
            while True:
                self._heartbeat = time.monotonic()
                items = self._take()
                if items and not self._abandoned:
                    self._commit_contained(items)
                elif not items and self._stopping.is_set():
                    self._housekeeping(idle=True)  # the last watermarks: published and saved
                    break
                self._housekeeping(idle=not items)
        except BaseException as exc:  # the writer's top: anything here is fatal and visible
            self.fatal = exc
            self.metrics.loop_errors.labels("writer").inc()
            logger.exception("ingest writer stopped by an error; unacked messages will be redelivered")
        finally:
            self.metrics.ready.set(0)
            self._writer_done.set()

    def _restore(self) -> None:
        marks = self._with_retry("read watermarks", self.store.watermarks)
        if marks is None:
            return
        self._tracker = WatermarkTracker(marks, max_pending=self.settings.watermark_pending_max)
        logger.info("restored %d ack watermarks", len(marks))

    def _take(self) -> list[Inbound]:
        """Up to batch_max_messages, waiting at most batch_max_ms after the first."""
        q = self._queue
        try:
            first = q.get(timeout=0.0 if self._stopping.is_set() else _IDLE_WAKE_S)
        except queue.Empty:
            return []
        items = [first]
        limit = self.settings.batch_max_messages
        deadline = time.monotonic() + self.settings.batch_max_ms / 1000
        get_nowait = q.get_nowait
        while len(items) < limit:
            try:
                items.append(get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                break
            try:
                items.append(q.get(timeout=remaining))
            except queue.Empty:
                break
        return items

    def _commit_contained(self, items: list[Inbound]) -> None:
        """Commit a flush; if that fails for a reason that is not the store being unavailable
        (a bug of ours, a value the store refuses that the checks let through), commit its
        messages one by one, and dead-letter the one that fails (acknowledged, counted,
        logged): no message stops the worker (docs/contract.md "Bounds and text")."""
        if self._commit_once(items):
            return
        for item in items:
            if self._abandoned:
                return
            self._commit_once([item])  # a single message is always done (committed or a letter)

    def _commit_once(self, items: list[Inbound]) -> bool:
        """True when ``items`` are done (committed, or the one message dead-lettered); False
        when several failed together (the caller then tries them one by one)."""
        flush: Flush | None = None
        try:
            flush = self._prepare(items)
            self._commit(flush)
            return True
        except Exception as exc:
            if flush is not None and flush.acked:
                # Committed and acknowledged, then our bookkeeping failed: trying again could
                # PUBACK a packet id the broker has reused for another message. Logged, counted.
                self.metrics.loop_errors.labels("after_commit").inc()
                logger.error("after committing %d messages: %s", len(items), safe_text(repr(exc), 300),
                             exc_info=exc)
                return True
            if len(items) == 1:
                self._poison(items[0], "commit", exc)
                return True
            logger.warning("a flush of %d messages failed (%s); committing them one by one",
                           len(items), safe_text(repr(exc), 300))
            return False

    def _poison_letter(self, item: Inbound, stage: str, exc: BaseException) -> DeadLetter:
        return containment.poison_letter(
            item.topic, item.payload, datetime.fromtimestamp(item.received_at, UTC), stage, exc,
            registry=self.registry, window=self.window, metrics=self.metrics)

    def _poison(self, item: Inbound, stage: str, exc: BaseException) -> None:
        """Dead-letter one message that could not be committed, then acknowledge it."""
        letter = self._poison_letter(item, stage, exc)
        result = self._write_letters([letter])
        if result is None:
            if self._stopping.is_set():
                self._abandoned = True
            return
        self.link.ack([item])
        self.metrics.dead_letters.labels(letter.reason).inc()

    def _prepare(self, items: list[Inbound]) -> Flush:
        """Classify every message of a flush (no store, no tracker)."""
        flush = Flush(items)
        dead = flush.dead
        seen: dict[tuple[str, int], bytes] = {}
        for item in items:
            try:
                self._prepare_one(item, flush, seen)
            except Exception as exc:  # a bug of ours: one dead letter, never the worker
                dead.append(self._poison_letter(item, "classify", exc))
        m = self.metrics
        m.received.labels("telemetry").inc(flush.n_telemetry)
        m.received.labels("status").inc(len(items) - flush.n_telemetry)
        return flush

    def _prepare_one(self, item: Inbound, flush: Flush, seen: dict[tuple[str, int], bytes]) -> None:
        valid, dead = flush.valid, flush.dead
        received = datetime.fromtimestamp(item.received_at, UTC)
        if item.topic.endswith("/status"):
            self._classify_status(item, received, dead, flush.drops)
            return
        flush.n_telemetry += 1
        if is_senml(item.topic):  # no seq: nothing to de-duplicate here, the store does it
            senml = classify_senml(item.topic, item.payload, received, self.registry, self.window)
            if isinstance(senml, ValidBatch):
                valid.append(senml)
            else:
                dead.append(senml)
            return
        classified = classify(item.topic, item.payload, received, self.registry, self.window)
        if isinstance(classified, ValidBatch):
            # A redelivery of a batch still waiting in this flush: identical bytes are the
            # same batch; different bytes go to the store, which files a conflict.
            key = (classified.batch.gateway, classified.batch.seq)
            if seen.get(key) == item.payload:
                flush.in_flush_duplicates += 1
                return
            seen[key] = item.payload
            valid.append(classified)
        else:
            dead.append(classified)

    def _commit(self, flush: Flush) -> None:
        """Write one flush in one transaction, then ack its messages."""
        m = self.metrics
        items, valid, dead = flush.items, flush.valid, flush.dead
        drops = [d for d in flush.drops if d[1] > self._tracker.watermark(d[0])]
        for gateway, through, at in drops:
            def record(gw: str = gateway, th: int = through, t: datetime = at) -> None:
                self.store.record_dropped(gw, th, t)
            if self._with_retry("record dropped", record) is None and self._stopping.is_set():
                self._abandoned = True  # gave up while stopping: nothing acked, all redelivered
                return
        result = self._write(valid, dead)
        if result is None:
            if self._stopping.is_set():
                self._abandoned = True
            return
        flush.acked = True  # from here on, never again (see _commit_once)
        acked = self.link.ack(items)
        now_mono = time.monotonic()
        observe = m.commit_lag.observe
        for item in items:
            if item.qos:
                observe(now_mono - item.received_mono)
        logger.debug("committed %d messages, acked %d", len(items), acked)

        self._tracker.mark_many(result.handled)
        for gateway, through, _ in drops:
            self._tracker.advance_to(gateway, through)
            m.dropped.inc()
        m.duplicates.inc(flush.in_flush_duplicates)
        self._account(valid, dead, result)

    def _classify_status(self, item: Inbound, received: datetime, dead: list[DeadLetter],
                         drops: list[tuple[str, int, datetime]]) -> None:
        def letter(reason: Any, detail: str, gateway: str | None = None, site: str | None = None) -> None:
            # A status is retained: the same poison comes back at every restart (``once``).
            dead.append(deadletters.build(topic=item.topic, raw=item.payload, received_at=received,
                                          reason=reason, detail=detail, gateway=gateway, site=site,
                                          once=True))
        try:
            t = topics.parse(item.topic)
        except TopicError as exc:
            letter("schema", str(exc))
            return
        try:
            status = decode_status(item.payload)
        except DecodeError as exc:
            letter(exc.reason, f"status: {exc.detail}", t.gateway, t.site)
            return
        if status.gateway != t.gateway or self.registry.site_of(t.gateway) != t.site:
            letter("topic_mismatch", f"status of {status.gateway!r} on {item.topic!r} "
                   f"(registered site {self.registry.site_of(t.gateway)!r})", t.gateway, t.site)
            return
        if status.dropped_through > 0:
            # Compared with the watermark in _commit.
            drops.append((t.gateway, status.dropped_through, received))

    def _write(self, valid: list[ValidBatch], dead: list[DeadLetter]) -> WriteResult | None:
        if not valid and not dead:
            return WriteResult()
        t0 = time.monotonic()
        # Watermarks that moved since the last save ride in this transaction (a save of its
        # own would cost another commit per flush); they describe earlier commits only.
        marks = dict(self._unsaved)
        try:
            result = self._with_retry(
                "write", lambda: self.store.write(valid, dead, watermarks=marks or None),
                raise_permanent=True)
        except StoreError as exc:
            self.metrics.store_errors.labels("error").inc()
            logger.error("store refused a transaction (%s); isolating the batch that causes it", exc)
            return self._write_isolating(valid, dead)
        if result is None:
            return None
        for gateway, seq in marks.items():
            if self._unsaved.get(gateway) == seq:
                del self._unsaved[gateway]
        self.metrics.write_seconds.observe(time.monotonic() - t0)
        self.metrics.flush_messages.observe(len(valid) + len(dead))
        assert isinstance(result, WriteResult)
        return result

    def _write_isolating(self, valid: list[ValidBatch], dead: list[DeadLetter]) -> WriteResult | None:
        """One transaction per batch; a batch the store refuses permanently becomes a dead letter
        (then ``_write_letters``: a letter the store refuses is stored in its minimal form)."""
        total = WriteResult()
        letters = list(dead)
        for vb in valid:
            def write_one(vb: ValidBatch = vb) -> WriteResult:
                return self.store.write([vb], [])
            try:
                r = self._with_retry("write one", write_one, raise_permanent=True)
            except StoreError as exc:
                b = vb.batch
                self.metrics.unhandled.labels("store_refused").inc()
                logger.error("store refused batch %s/%d: %s; dead-lettered", b.gateway, b.seq,
                             safe_text(str(exc), 500))
                letters.append(deadletters.build(
                    topic=vb.topic, raw=vb.raw, received_at=vb.received_at, reason="schema",
                    detail=f"store refused the batch: {exc}", gateway=b.gateway, site=vb.site,
                    seq=b.seq if vb.sequenced else None))  # SenML: no seq, acknowledges nothing
                continue
            if r is None:
                return None
            containment.merge(total, r)
        r = self._write_letters(letters)
        if r is None:
            return None
        containment.merge(total, r)
        return total

    def _write_letters(self, letters: list[DeadLetter]) -> WriteResult | None:
        """``containment.write_letters`` through this worker's retrying store calls."""
        def write(ls: list[DeadLetter]) -> WriteResult | None:
            r = self._with_retry("write dead letters", lambda: self.store.write([], ls), raise_permanent=True)
            return r if r is None or isinstance(r, WriteResult) else WriteResult()
        return containment.write_letters(letters, write, self.metrics)

    def _with_retry(self, what: str, fn: Callable[[], Any], *, raise_permanent: bool = False) -> Any:
        """Call ``fn`` until it does not raise StoreUnavailable, with exponential backoff.
        Returns None when stopping and the grace period is over (the caller then acks nothing)."""
        s = self.settings
        delay = s.store_retry_initial_ms / 1000
        give_up_at: float | None = None
        failures = 0
        while True:
            self._heartbeat = time.monotonic()
            self._store_call_started = self._heartbeat
            try:
                out = fn()
            except StoreUnavailable as exc:
                failures += 1
                self._set_store_ok(False)
                self.metrics.store_errors.labels("unavailable").inc()
                log = logger.warning if failures == 1 else logger.debug
                log("store unavailable during %s (attempt %d, retry in %.2f s): %s",
                    what, failures, delay, exc)
            except StoreError:
                if raise_permanent:
                    raise
                self.metrics.store_errors.labels("error").inc()
                logger.exception("store refused %s", what)
                return None
            else:
                if failures:
                    logger.info("store answering again after %d failed attempt(s) (%s)", failures, what)
                self._set_store_ok(True)
                self._last_store_contact = time.monotonic()
                return out if out is not None else _DONE
            finally:
                self._store_call_started = None
            if self._stopping.is_set():
                if give_up_at is None:
                    give_up_at = time.monotonic() + s.stop_grace_s
                remaining = give_up_at - time.monotonic()
                if remaining <= 0:
                    logger.warning("stopping with the store down: %s abandoned, messages stay unacked", what)
                    return None
                time.sleep(min(delay, remaining))  # backoff, not a sync wait: nothing can wake us
            else:
                self._stopping.wait(delay)  # backoff; a stop request ends it early
            delay = min(delay * 2, s.store_retry_max_ms / 1000)

    def _set_store_ok(self, ok: bool) -> None:
        if ok != self._store_ok:
            self._store_ok = ok
        self.metrics.ready.set(1 if self.ready else 0)

    def _account(self, valid: list[ValidBatch], dead: list[DeadLetter], result: WriteResult) -> None:
        m = self.metrics
        m.stored_batches.inc(result.stored_batches)
        m.stored_readings.inc(result.stored_readings)
        m.duplicates.inc(result.duplicate_batches)
        mine = {id(d) for d in dead}
        for d in dead:
            m.dead_letters.labels(d.reason).inc()
        for d in result.dead_letters:
            if id(d) not in mine:  # made by the store (conflict)
                m.dead_letters.labels(d.reason).inc()
        for vb in valid:
            b = vb.batch
            newest = max(r.ts for r in b.readings)
            m.lag_reading.observe(max(0.0, (vb.received_at - newest).total_seconds()))
            m.lag_sent.observe(max(0.0, (vb.received_at - b.sent_at).total_seconds()))

    def _housekeeping(self, *, idle: bool) -> None:
        m = self.metrics
        m.queue_depth.set(self._queue.qsize())
        now = time.monotonic()
        self._close_gaps(now)
        changed = self._tracker.take_changed()
        m.watermark_overflow.set(self._tracker.overflowed)
        if changed:
            self._unsaved.update(changed)
        # Busy: the next write carries them. Idle: a transaction of their own.
        if self._unsaved and (idle or self._stopping.is_set()) and self._save_watermarks():
            self._unsaved.clear()
        republish = self.link.take_reconnected()
        to_publish = self._tracker.snapshot() if republish else changed
        if to_publish:
            m.acks_published.inc(self.link.publish_watermarks(to_publish, self.registry.site_of))
        if now - self._last_store_contact > self.settings.store_ping_interval_s:
            self._ping()
        m.ready.set(1 if self.ready else 0)

    def _save_watermarks(self) -> bool:
        try:
            self.store.save_watermarks(dict(self._unsaved))
        except StoreUnavailable as exc:
            self._set_store_ok(False)
            logger.debug("watermarks not saved yet: %s", exc)
            return False
        except StoreError as exc:
            # Refused for good (cannot happen within the contract's bounds): not a reason to
            # stop; they are saved again when they next move, and republished meanwhile.
            self.metrics.store_errors.labels("error").inc()
            logger.error("store refused watermarks %s: %s", self._unsaved, safe_text(str(exc), 300))
            return True
        return True

    def _ping(self) -> None:
        try:
            ok = self.store.ping()
        except IngestError:
            ok = False
        self._last_store_contact = time.monotonic()
        self._set_store_ok(ok)

    def _close_gaps(self, now: float) -> None:
        """Ask the store about seqs above a gap (another worker may have handled them)."""
        src = self._handled_source
        if src is None:
            return
        interval = self.settings.gap_check_interval_ms / 1000
        for gateway, mark in self._tracker.gaps().items():
            if now - self._gap_checked.get(gateway, 0.0) < interval:
                continue
            self._gap_checked[gateway] = now
            try:
                seqs = src.handled_seqs(gateway, mark, self.settings.watermark_pending_max)
            except StoreUnavailable:
                self._set_store_ok(False)
                return
            for seq in seqs:
                self._tracker.mark(gateway, seq)


_DONE = object()  # what _with_retry returns for a call that returns None
