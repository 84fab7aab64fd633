"""The ingest writer's calls to the store (ingest/worker.py): retried with exponential backoff
while the store is unavailable, a transaction the store refuses split to find the batch that
causes it, and the health the worker reports from them (store reachable, a call stalled).

Only the writer thread uses it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from contract.bounds import safe_text
from ingest import containment, deadletters
from ingest.errors import IngestError, StoreError, StoreUnavailable
from ingest.metrics import IngestMetrics
from ingest.ports import DeadLetter, Store, ValidBatch, WriteResult
from ingest.settings import IngestSettings

logger = logging.getLogger("ingest.worker")

_DONE = object()  # what with_retry returns for a call that returns None


class StoreCalls:
    """``store`` as the writer calls it. ``on_state`` runs after every change of :attr:`ok`
    and after every ping (the worker republishes its readiness)."""

    def __init__(self, store: Store, settings: IngestSettings, metrics: IngestMetrics,
                 stopping: threading.Event, on_state: Callable[[], None]) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._stopping = stopping
        self._on_state = on_state
        self.ok = False
        self.heartbeat = time.monotonic()  # the writer's last sign of life
        self.call_started: float | None = None  # monotonic start of the running store call
        self.last_contact = 0.0
        # Watermarks that moved since the last save (gateway → seq).
        self.unsaved: dict[str, int] = {}

    def set_ok(self, ok: bool) -> None:
        self.ok = ok
        self._on_state()

    def with_retry(self, what: str, fn: Callable[[], Any], *, raise_permanent: bool = False) -> Any:
        """Call ``fn`` until it does not raise StoreUnavailable, with exponential backoff.
        Returns None when stopping and the grace period is over (the caller then acks nothing)."""
        s = self.settings
        delay = s.store_retry_initial_ms / 1000
        give_up_at: float | None = None
        failures = 0
        while True:
            self.heartbeat = time.monotonic()
            self.call_started = self.heartbeat
            try:
                out = fn()
            except StoreUnavailable as exc:
                failures += 1
                self.set_ok(False)
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
                self.set_ok(True)
                self.last_contact = time.monotonic()
                return out if out is not None else _DONE
            finally:
                self.call_started = None
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

    def write(self, valid: list[ValidBatch], dead: list[DeadLetter]) -> WriteResult | None:
        """One transaction (None: abandoned while stopping, nothing may be acked)."""
        if not valid and not dead:
            return WriteResult()
        t0 = time.monotonic()
        # Watermarks that moved since the last save ride in this transaction (a save of its
        # own would cost another commit per flush); they describe earlier commits only.
        marks = dict(self.unsaved)
        try:
            result = self.with_retry(
                "write", lambda: self.store.write(valid, dead, watermarks=marks or None),
                raise_permanent=True)
        except StoreError as exc:
            self.metrics.store_errors.labels("error").inc()
            logger.error("store refused a transaction (%s); isolating the batch that causes it", exc)
            return self._write_isolating(valid, dead)
        if result is None:
            return None
        for gateway, seq in marks.items():
            if self.unsaved.get(gateway) == seq:
                del self.unsaved[gateway]
        self.metrics.write_seconds.observe(time.monotonic() - t0)
        self.metrics.flush_messages.observe(len(valid) + len(dead))
        assert isinstance(result, WriteResult)
        return result

    def _write_isolating(self, valid: list[ValidBatch], dead: list[DeadLetter]) -> WriteResult | None:
        """One transaction per batch; a batch the store refuses permanently becomes a dead letter
        (then ``write_letters``: a letter the store refuses is stored in its minimal form)."""
        total = WriteResult()
        letters = list(dead)
        for vb in valid:
            def write_one(vb: ValidBatch = vb) -> WriteResult:
                return self.store.write([vb], [])
            try:
                r = self.with_retry("write one", write_one, raise_permanent=True)
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
        r = self.write_letters(letters)
        if r is None:
            return None
        containment.merge(total, r)
        return total

    def write_letters(self, letters: list[DeadLetter]) -> WriteResult | None:
        """``containment.write_letters`` through the retrying store calls."""
        def write(ls: list[DeadLetter]) -> WriteResult | None:
            r = self.with_retry("write dead letters", lambda: self.store.write([], ls), raise_permanent=True)
            return r if r is None or isinstance(r, WriteResult) else WriteResult()
        return containment.write_letters(letters, write, self.metrics)

    def save_watermarks(self) -> bool:
        """The unsaved watermarks in a transaction of their own; True when done with them."""
        try:
            self.store.save_watermarks(dict(self.unsaved))
        except StoreUnavailable as exc:
            self.set_ok(False)
            logger.debug("watermarks not saved yet: %s", exc)
            return False
        except StoreError as exc:
            # Refused for good (cannot happen within the contract's bounds): not a reason to
            # stop; they are saved again when they next move, and republished meanwhile.
            self.metrics.store_errors.labels("error").inc()
            logger.error("store refused watermarks %s: %s", self.unsaved, safe_text(str(exc), 300))
            return True
        return True

    def ping(self) -> None:
        try:
            ok = self.store.ping()
        except IngestError:
            ok = False
        self.last_contact = time.monotonic()
        self.set_ok(ok)
