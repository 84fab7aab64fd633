"""The durable outbox: every sealed batch, from before it is first published until the
ingest's ack watermark covers it.

Nothing is deleted on PUBACK: Mosquitto persists by periodic snapshot and drops silently
from full per-client queues, so a PUBACK only says the broker had the message for a moment
(docs/reliability.md). A batch leaves the outbox in exactly two ways:

- ``ack(watermark)``: the ingest has durably handled every seq up to the watermark;
- the byte cap: past ``max_bytes`` the OLDEST batches are dropped, each drop counted, and
  the highest dropped seq kept as ``dropped_through``, which the agent reports in its status
  so the platform records the gap as lost instead of waiting for it (docs/contract.md).

``seq`` lives here too (``last_seq``), in the same transaction as the batches, so it
survives restarts and is never reused.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol

from edge.batching import SealedBatch
from edge.errors import OutboxError, OutboxLocked


@dataclass(frozen=True, slots=True)
class OutboxStats:
    batches: int
    bytes: int
    oldest: datetime | None
    last_seq: int
    acked_through: int
    dropped_batches: int
    dropped_readings: int
    dropped_through: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What the cap dropped to make room for an append (zeros when nothing)."""

    dropped_batches: int = 0
    dropped_readings: int = 0
    dropped_through: int = 0

    def then(self, later: AppendResult) -> AppendResult:
        """Running totals: this result followed by ``later``."""
        if not later.dropped_batches:
            return self
        return AppendResult(self.dropped_batches + later.dropped_batches,
                            self.dropped_readings + later.dropped_readings, later.dropped_through)


class Outbox(Protocol):
    @property
    def last_seq(self) -> int:
        """Highest seq ever appended (0 for a new outbox)."""
        ...

    @property
    def acked_through(self) -> int:
        """Highest ack watermark applied."""
        ...

    def stats(self) -> OutboxStats: ...

    def append(self, batches: Sequence[SealedBatch]) -> AppendResult:
        """Store ``batches`` durably (one transaction). Their seqs must continue ``last_seq``."""
        ...

    def ack(self, watermark: int) -> int:
        """Delete every batch with ``seq <= watermark``; the number deleted."""
        ...

    def after(self, seq: int, *, through: int, limit: int) -> list[SealedBatch]:
        """Stored batches with ``seq < b.seq <= through``, oldest first, at most ``limit``."""
        ...

    def close(self) -> None: ...


def _check_continues(last_seq: int, batches: Sequence[SealedBatch]) -> None:
    for i, b in enumerate(batches):
        if b.seq != last_seq + 1 + i:
            raise OutboxError(f"batch seq {b.seq} does not continue last seq {last_seq + i}")


def _plan_drops(
    oldest_first: Iterable[tuple[int, int, int]], total_bytes: int, max_bytes: int, count: int
) -> tuple[list[int], int, int]:
    """Which batches (seq, size, readings) the cap drops: oldest first while the outbox is
    over ``max_bytes``, never the last one. Returns (seqs, bytes, readings)."""
    seqs: list[int] = []
    freed = readings = 0
    for seq, size, n in oldest_first:
        if total_bytes - freed <= max_bytes or count - len(seqs) <= 1:
            break
        seqs.append(seq)
        freed += size
        readings += n
    return seqs, freed, readings


class MemoryOutbox:
    """The outbox in memory: the fake for unit tests, same contract as :class:`SqliteOutbox`."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._batches: OrderedDict[int, SealedBatch] = OrderedDict()
        self._bytes = 0
        self._last_seq = 0
        self._acked = 0
        self._dropped = AppendResult()

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def acked_through(self) -> int:
        return self._acked

    def stats(self) -> OutboxStats:
        oldest = next(iter(self._batches.values())).created_at if self._batches else None
        return OutboxStats(len(self._batches), self._bytes, oldest, self._last_seq, self._acked,
                           self._dropped.dropped_batches, self._dropped.dropped_readings,
                           self._dropped.dropped_through)

    def append(self, batches: Sequence[SealedBatch]) -> AppendResult:
        _check_continues(self._last_seq, batches)
        for b in batches:
            self._batches[b.seq] = b
            self._bytes += len(b.payload)
        if batches:
            self._last_seq = batches[-1].seq
        seqs, freed, readings = _plan_drops(
            ((b.seq, len(b.payload), b.readings) for b in self._batches.values()),
            self._bytes, self.max_bytes, len(self._batches))
        for seq in seqs:
            del self._batches[seq]
        self._bytes -= freed
        if not seqs:
            return AppendResult()
        dropped = AppendResult(len(seqs), readings, seqs[-1])
        self._dropped = self._dropped.then(dropped)
        return dropped

    def ack(self, watermark: int) -> int:
        mark = min(watermark, self._last_seq)
        if mark <= self._acked:
            return 0
        self._acked = mark
        gone = [s for s in self._batches if s <= mark]
        for seq in gone:
            self._bytes -= len(self._batches.pop(seq).payload)
        return len(gone)

    def after(self, seq: int, *, through: int, limit: int) -> list[SealedBatch]:
        out: list[SealedBatch] = []
        for s, b in self._batches.items():
            if len(out) >= limit or s > through:
                break
            if s > seq:
                out.append(b)
        return out

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    seq INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    readings INTEGER NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_META_KEYS = ("last_seq", "acked_through", "dropped_batches", "dropped_readings", "dropped_through")


class SqliteOutbox:
    """The outbox in ``{directory}/outbox.db``: SQLite in WAL mode with ``synchronous=FULL``,
    so a committed append survives a power cut (the WAL is fsynced at every commit).

    One agent per directory: an exclusive ``flock`` on ``outbox.lock`` (released by the
    kernel when the process dies, even by ``kill -9``). Used from one thread at a time.
    """

    def __init__(self, directory: str | Path, *, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "outbox.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutboxError(f"cannot open outbox directory {self.directory}: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise OutboxLocked(f"another edge agent is using the outbox {self.directory}") from exc
        try:
            self._db = self._open_db()
        except (sqlite3.Error, OSError) as exc:
            os.close(self._lock_fd)
            raise OutboxError(f"cannot open outbox database in {self.directory}: {exc}") from exc
        self._oldest_stale = True
        self._oldest: datetime | None = None

    def _open_db(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (_tx). check_same_thread=False: the
        # agent may be built on one thread and run on another, never used by two at once.
        db = sqlite3.connect(self.directory / "outbox.db", isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"outbox database refuses WAL mode (got {mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        (self._last_seq, self._acked, dropped_batches, dropped_readings, dropped_through) = (
            int(meta.get(k, 0)) for k in _META_KEYS)
        self._dropped = AppendResult(dropped_batches, dropped_readings, dropped_through)
        count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM batch").fetchone()
        self._count, self._bytes = int(count), int(size)
        return db

    def __enter__(self) -> SqliteOutbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._lock_fd < 0:
            return
        try:
            self._db.close()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def acked_through(self) -> int:
        return self._acked

    def stats(self) -> OutboxStats:
        if self._oldest_stale:
            row = self._query("SELECT created_at FROM batch ORDER BY seq LIMIT 1").fetchone()
            self._oldest = datetime.fromisoformat(row[0]) if row else None
            self._oldest_stale = False
        d = self._dropped
        return OutboxStats(self._count, self._bytes, self._oldest, self._last_seq, self._acked,
                           d.dropped_batches, d.dropped_readings, d.dropped_through)

    @contextmanager
    def _tx(self, *, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction. ``fsync=False`` (deletes under the watermark) commits without
        waiting for the disk: a power cut may undo it, which only means re-sending batches
        the ingest already has (a no-op there), and it spares an fsync per ack."""
        try:
            if not fsync:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            finally:
                if not fsync:
                    self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox write failed: {exc}") from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox read failed: {exc}") from exc

    @staticmethod
    def _set_meta(db: sqlite3.Connection, values: dict[str, int]) -> None:
        db.executemany("INSERT INTO meta(key, value) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", list(values.items()))

    def append(self, batches: Sequence[SealedBatch]) -> AppendResult:
        _check_continues(self._last_seq, batches)
        if not batches:
            return AppendResult()
        added = sum(len(b.payload) for b in batches)
        count, total = self._count + len(batches), self._bytes + added
        last_seq = batches[-1].seq
        with self._tx() as db:
            db.executemany(
                "INSERT INTO batch(seq, created_at, readings, size, payload) VALUES (?, ?, ?, ?, ?)",
                [(b.seq, b.created_at.isoformat(), b.readings, len(b.payload), b.payload) for b in batches])
            meta = {"last_seq": last_seq}
            dropped = AppendResult()
            if total > self.max_bytes:
                rows = db.execute("SELECT seq, size, readings FROM batch ORDER BY seq")
                seqs, freed, readings = _plan_drops(rows, total, self.max_bytes, count)
                rows.close()
                if seqs:
                    db.execute("DELETE FROM batch WHERE seq <= ?", (seqs[-1],))
                    count, total = count - len(seqs), total - freed
                    dropped = AppendResult(len(seqs), readings, seqs[-1])
                    totals = self._dropped.then(dropped)
                    meta |= {"dropped_batches": totals.dropped_batches,
                             "dropped_readings": totals.dropped_readings,
                             "dropped_through": totals.dropped_through}
            self._set_meta(db, meta)
        # Only after the commit: the in-memory view never runs ahead of the disk.
        self._last_seq, self._count, self._bytes = last_seq, count, total
        if dropped.dropped_batches:
            self._dropped = self._dropped.then(dropped)
            self._oldest_stale = True
        elif self._count == len(batches):
            self._oldest_stale = True
        return dropped

    def ack(self, watermark: int) -> int:
        mark = min(watermark, self._last_seq)
        if mark <= self._acked:
            return 0
        with self._tx(fsync=False) as db:
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM batch WHERE seq <= ?", (mark,)).fetchone()
            db.execute("DELETE FROM batch WHERE seq <= ?", (mark,))
            self._set_meta(db, {"acked_through": mark})
        self._acked = mark
        self._count -= int(count)
        self._bytes -= int(size)
        if count:
            self._oldest_stale = True
        return int(count)

    def after(self, seq: int, *, through: int, limit: int) -> list[SealedBatch]:
        rows = self._query(
            "SELECT seq, created_at, readings, payload FROM batch WHERE seq > ? AND seq <= ? "
            "ORDER BY seq LIMIT ?", (seq, through, limit)).fetchall()
        return [SealedBatch(int(s), datetime.fromisoformat(c), int(n), bytes(p)) for s, c, n, p in rows]
