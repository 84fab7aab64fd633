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
(ingest/mqtt_source.py explains why).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from contract import topics
from contract.bounds import safe_text
from contract.codec import decode_status
from contract.errors import DecodeError, TopicError
from contract.registry import Registry
from ingest import containment, deadletters
from ingest.errors import IngestError, StoreError, StoreUnavailable
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import ConfigError, MqttLink, parse_broker_url
from ingest.pipeline import TimeWindow, classify
from ingest.ports import DeadLetter, Store, ValidBatch, WriteResult
from ingest.senml import classify_senml, is_senml
from ingest.settings import IngestSettings
from ingest.source import AckPublisher, Inbound, Source
from ingest.sources import open_source
from ingest.watermarks import HandledSeqSource, WatermarkTracker

__all__ = ["ConfigError", "Inbound", "IngestWorker", "MqttLink", "parse_broker_url"]

logger = logging.getLogger(__name__)

# The writer wakes at least this often when idle (store ping, watermark republish, gaps).
_IDLE_WAKE_S = 0.2


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
        self._store_ok = False
        self._store_call_started: float | None = None  # monotonic start of the running store call
        self._started = False
        self._heartbeat = time.monotonic()
        self._last_store_contact = 0.0
        self._tracker = WatermarkTracker(max_pending=settings.watermark_pending_max)
        self._unsaved: dict[str, int] = {}
        self._gap_checked: dict[str, float] = {}
        self._handled_source = store if isinstance(store, HandledSeqSource) else None
        if source is None:
            cid = client_id or settings.client_id or f"smartward-ingest-{socket.gethostname()}"
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
        return self.source.connected and self._store_ok and self.live and not self.stalled

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

    # --- source thread side ------------------------------------------------------------------

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
        self.source.ack([item])
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
        republish = self.acks.take_reconnected()
        resent = self._tracker.take_resent()  # (RabbitMQ keeps a retained ack on one node)
        to_publish = self._tracker.snapshot() if republish else resent | changed
        if to_publish:
            m.acks_published.inc(self.acks.publish_watermarks(to_publish, self.registry.site_of))
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
