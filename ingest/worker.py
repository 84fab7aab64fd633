"""The ingest worker: a source in, one writer thread, store transaction, then acks.

Threads and their jobs (the recorder pattern of Home Assistant: one writer fed by a bounded queue)::

    source thread ── sink ──▶ bounded queue ──▶ writer thread
      (paho network thread, or       (≤ receive_maximum)   classify → store.write (ONE
       the AMQP consumer; never                            transaction) → ack each message
       raises, never touches the store)                    → retained ack watermarks (MQTT)

The source is a port (ingest/source.py): MQTT (``ingest/mqtt_source.py``, the default) or a
RabbitMQ quorum queue over AMQP (``ingest/amqp_source.py``); ``SMARTWARD_INGEST_SOURCE`` chooses.

One writer, on purpose: a separate thread that classified the next flush while the writer
waited for the database was measured (docs/performance.md, "Ingest") and brought nothing — the
database backend is the serial part, and the extra thread cost ≈ 3 µs of CPU per message.

Delivery: QoS 1, persistent session (MQTT 5 ``clean_start=False`` + Session Expiry Interval,
MQTT-3.1.2.11.2), ``manual_ack=True`` (AMQP: a durable quorum queue, manual acks): the ack
leaves only after the transaction that holds the message committed, so a crash at any point
makes the broker redeliver; the store turns the redelivery into a no-op by ``(gateway, seq)``.

Backpressure: the MQTT 5 Receive Maximum we send in CONNECT (MQTT-3.1.2.11.3), or the AMQP
prefetch (``basic.qos``) set to the same value, caps the unacknowledged messages the broker has
out to us; when the store is slow or down the writer retries the same transaction with backoff
and acks nothing, so the broker stops sending once that window is full and keeps the rest in its
own queue (size it: ``max_queued_messages`` in deploy/mosquitto). The in-memory queue is
therefore bounded by ``receive_maximum`` messages of at most 256 KiB. (With MQTT 3.1.1
Mosquitto's ``max_inflight_messages`` plays that role; we speak 5.)

Acks and reconnects: an ack handle is only meaningful on the connection that delivered it, so
each message carries its connection generation and only current ones are acked
(mqttlink/link.py explains why).

Beside this module: ``ingest/flush.py`` classifies the messages of a flush (no store), and
``ingest/store_calls.py`` makes the store calls (retries with backoff, isolating a batch the
store refuses, the store's health).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime
from types import TracebackType

from contract.bounds import safe_text
from contract.registry import Registry
from ingest.errors import StoreUnavailable
from ingest.flush import Classifier, Flush
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import ConfigError, MqttLink, parse_broker_url
from ingest.pipeline import TimeWindow
from ingest.ports import DeadLetter, Store, ValidBatch, WriteResult
from ingest.settings import IngestSettings
from ingest.source import AckPublisher, Inbound, Source
from ingest.sources import open_source
from ingest.store_calls import StoreCalls
from ingest.watermarks import HandledSeqSource, WatermarkTracker
from mqttlink.acks import hand_over
from mqttlink.ids import host_client_id

__all__ = ["ConfigError", "Flush", "Inbound", "IngestWorker", "MqttLink", "parse_broker_url"]

logger = logging.getLogger(__name__)

# The writer wakes at least this often when idle (store ping, watermark republish, gaps).
_IDLE_WAKE_S = 0.2


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
        source: Source | None = None,
        acks: AckPublisher | None = None,
    ) -> None:
        """``source``/``acks``: the ports (ingest/source.py); by default built from the
        settings (``SMARTWARD_INGEST_SOURCE``) by ``ingest.sources.open_source``."""
        self.settings = settings
        self.store = store
        self.registry = registry
        self.metrics = metrics if metrics is not None else IngestMetrics()
        self.window = TimeWindow(settings.window_past, settings.window_future)
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=settings.receive_maximum)
        self._stopping = threading.Event()
        self._writer_done = threading.Event()
        self.fatal: BaseException | None = None
        self._started = False
        self._calls = StoreCalls(store, settings, self.metrics, self._stopping,
                                 lambda: self.metrics.ready.set(1 if self.ready else 0))
        self._classifier = Classifier(registry, self.window, self.metrics)
        self._tracker = WatermarkTracker(max_pending=settings.watermark_pending_max)
        self._gap_checked: dict[str, float] = {}
        self._handled_source = store if isinstance(store, HandledSeqSource) else None
        if source is None:
            cid = client_id or settings.client_id or host_client_id("ingest")
            source, default_acks = open_source(settings, client_id=cid, metrics=self.metrics)
            acks = acks if acks is not None else default_acks
        elif acks is None:
            raise ConfigError("a Source given to the worker needs its AckPublisher too")
        self.source: Source = source
        self.acks: AckPublisher = acks
        self._own_acks = id(acks) != id(source)  # a publisher of its own (the AMQP source)
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
        if self._own_acks:
            self.acks.start()
        self.source.start(self._enqueue)

    def stop(self) -> None:
        """SIGTERM path: finish the current transaction, ack, publish watermarks, disconnect."""
        if not self._started:
            return
        self._stopping.set()
        budget = self.settings.stop_grace_s + self.settings.batch_max_ms / 1000 + 30
        self._writer.join(timeout=budget)
        self.source.stop()
        if self._own_acks:
            self.acks.stop()
        self._started = False
        logger.info("ingest worker stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the writer ends (stop() or a fatal error). True when it ended."""
        return self._writer_done.wait(timeout)

    # --- health ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.source.connected and self._calls.ok and self.live and not self.stalled

    @property
    def stalled(self) -> bool:
        """A store call has been running longer than ``store_stall_s`` (a locked table, a
        saturated disk): not ready, although the database answers pings (docs/reliability.md R7)."""
        started = self._calls.call_started
        return started is not None and time.monotonic() - started > self.settings.store_stall_s

    @property
    def live(self) -> bool:
        if self.fatal is not None or self._writer_done.is_set():
            return False
        return time.monotonic() - self._calls.heartbeat < self.settings.liveness_timeout_s

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def watermarks(self) -> dict[str, int]:
        return self._tracker.snapshot()

    # --- source thread side ------------------------------------------------------------------

    def _enqueue(self, m: Inbound) -> None:
        # Bounded by receive_maximum; when stopping, a message is left unacked (mqttlink/acks.py).
        hand_over(self._queue, m, self._stopping)

    # --- writer thread ---------------------------------------------------------------------

    def _run_writer(self) -> None:
        try:
            self._restore()
            while True:
                self._calls.heartbeat = time.monotonic()
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
        marks = self._calls.with_retry("read watermarks", self.store.watermarks)
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
            flush = self._classifier.prepare(items)
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

    def _poison(self, item: Inbound, stage: str, exc: BaseException) -> None:
        """Dead-letter one message that could not be committed, then acknowledge it."""
        letter = self._classifier.poison_letter(item, stage, exc)
        result = self._calls.write_letters([letter])
        if result is None:
            if self._stopping.is_set():
                self._abandoned = True
            return
        self.source.ack([item])
        self.metrics.dead_letters.labels(letter.reason).inc()

    def _commit(self, flush: Flush) -> None:
        """Write one flush in one transaction, then ack its messages."""
        m = self.metrics
        items, valid, dead = flush.items, flush.valid, flush.dead
        drops = [d for d in flush.drops if d[1] > self._tracker.watermark(d[0])]
        for gateway, through, at in drops:
            def record(gw: str = gateway, th: int = through, t: datetime = at) -> None:
                self.store.record_dropped(gw, th, t)
            if self._calls.with_retry("record dropped", record) is None and self._stopping.is_set():
                self._abandoned = True  # gave up while stopping: nothing acked, all redelivered
                return
        result = self._calls.write(valid, dead)
        if result is None:
            if self._stopping.is_set():
                self._abandoned = True
            return
        flush.acked = True  # from here on, never again (see _commit_once)
        acked = self.source.ack(items)
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
        unsaved = self._calls.unsaved
        if changed:
            unsaved.update(changed)
        # Busy: the next write carries them. Idle: a transaction of their own.
        if unsaved and (idle or self._stopping.is_set()) and self._calls.save_watermarks():
            unsaved.clear()
        republish = self.acks.take_reconnected()
        resent = self._tracker.take_resent()  # (RabbitMQ keeps a retained ack on one node)
        to_publish = self._tracker.snapshot() if republish else resent | changed
        if to_publish:
            m.acks_published.inc(self.acks.publish_watermarks(to_publish, self.registry.site_of))
        if now - self._calls.last_contact > self.settings.store_ping_interval_s:
            self._calls.ping()
        m.ready.set(1 if self.ready else 0)

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
                self._calls.set_ok(False)
                return
            for seq in seqs:
                self._tracker.mark(gateway, seq)

