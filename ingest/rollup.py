"""Rollups ``readings_1m`` and ``readings_1h``, kept current by the platform.

Under TimescaleDB's Timescale license the rollups are continuous aggregates and the server
refreshes them. Everywhere else (plain PostgreSQL, the Apache edition of TimescaleDB that
Debian ships, SQLite) the stores refresh them incrementally, from the *stored stream*:

1. every reading carries the id of the batch that stored it (``readings.batch_id``) and every
   batch its place in commit order (``ingest_batches``, and ``ingest_unsequenced`` for SenML
   packs, which have no seq, with ids from the same counter: the writing transaction under
   PostgreSQL, the id under SQLite, which has one writer at a time);
2. ``refresh_rollups`` takes the batches stored since its checkpoint, finds the
   (sensor, metric, minute) buckets their readings touched, recomputes exactly those from
   ``readings`` and upserts them, then recomputes the hours that contain them from
   ``readings_1m``, and moves its checkpoint, all in one transaction. Late data (a gateway
   back after hours) is handled like live data, whatever its age. Nothing is added to the
   write path, and no touched bucket can be missed, even across a crash.

``RollupRunner`` calls ``refresh_rollups`` every few seconds (and soon after ``notify``), so
the rollups stay current within a minute as docs/contract.md asks. Readings loaded by other
means than the ingest (``batch_id`` NULL) are not in the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Protocol

from ingest.errors import IngestError, StoreUnavailable

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 20_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class RollupSource(Protocol):
    def refresh_rollups(self, *, max_rows: int = DEFAULT_MAX_ROWS) -> int:
        """Roll up the batches stored since the last refresh, about ``max_rows`` readings at
        a time (whole writer transactions); return how many readings (at least 1 when any
        progress was made, 0 when there was nothing new)."""
        ...


def bucket_start(t: datetime, seconds: int) -> datetime:
    """Start (UTC) of the ``seconds``-long bucket holding ``t``, aligned on the Unix epoch
    like ``time_bucket`` and ``date_trunc`` for minutes and hours."""
    us = (t - _EPOCH) // _MICROSECOND
    return _EPOCH + (us - us % (seconds * 1_000_000)) * _MICROSECOND


class RollupRunner:
    """A thread that keeps a store's rollups current.

    Refreshes every ``interval_s``, and after ``notify()`` (a write happened) as soon as
    ``min_interval_s`` has passed since the last refresh. A refresh catches up in pages of
    about ``max_rows`` readings. A store outage is logged once and retried on the next tick.
    """

    def __init__(self, store: RollupSource, *, interval_s: float = 5.0, min_interval_s: float = 1.0,
                 max_rows: int = DEFAULT_MAX_ROWS) -> None:
        if interval_s <= 0 or min_interval_s < 0 or max_rows < 1:
            raise ValueError("interval_s > 0, min_interval_s >= 0 and max_rows >= 1 are required")
        self.store = store
        self.interval_s = interval_s
        self.min_interval_s = min_interval_s
        self.max_rows = max_rows
        self.refreshed = 0  # readings rolled up since start
        self.failures = 0
        self.last_success: float | None = None  # time.monotonic() of the last good refresh
        # Set when a refresh has caught up with everything written before the last notify().
        self.caught_up = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Refresh until the rollups have caught up; return the readings rolled up."""
        total = 0
        while True:
            n = self.store.refresh_rollups(max_rows=self.max_rows)
            total += n
            if n < self.max_rows or self._stop.is_set():
                break
        self.refreshed += total
        self.last_success = time.monotonic()
        return total

    def notify(self) -> None:
        """Something was written: refresh soon."""
        self.caught_up.clear()
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("RollupRunner already started")
        self._thread = threading.Thread(target=self._loop, name="rollup", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> RollupRunner:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _loop(self) -> None:
        down = False
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                n = self.run_once()
            except StoreUnavailable as exc:
                self.failures += 1
                if not down:
                    logger.warning("rollup refresh paused, store unavailable: %s", exc)
                down = True
            except IngestError:
                self.failures += 1
                logger.exception("rollup refresh failed")
            else:
                self.caught_up.set()
                if down:
                    logger.info("rollup refresh resumed")
                down = False
                logger.debug("rollups refreshed: %d readings", n)
            # Debounce: a busy ingest notifies after every write.
            self._stop.wait(self.min_interval_s)
