"""The upload log in the database (table ``tt10_uploads``, ops migration 0007): one row per
cycle file with its state (``pending`` written, not tried yet; ``sent``; ``failed`` the last
try failed, it will be tried again), attempts, times and last error. The ops API shows it to
the cluster manager (``GET /api/v1/feeds/tt10?site=``).

The spool is the truth about what was delivered; the log is its report. A write that the
database refuses is kept in memory (bounded) and written with the next one, so an outage of
the database delays the report but never the files. The feed writes its own SQL (docs/style.md:
components share the store, never code); the table itself is created by ``smartward db
migrate``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from feeds.errors import FeedConfigError, StoreUnavailable
from feeds.tt10.reader import sqlite_time

logger = logging.getLogger(__name__)

EventKind = Literal["written", "sent", "failed"]
MAX_UNLOGGED = 100_000


@dataclass(frozen=True, slots=True)
class UploadEvent:
    kind: EventKind
    file: str
    site: str
    sensor: str
    station: str
    cycle: datetime
    bytes: int
    at: datetime
    target: str | None = None
    error: str | None = None


_COLS = ("file, site, sensor, station, cycle, state, attempts, bytes, target, created_at, "
         "last_attempt_at, sent_at, error")
# A written file: a new pending row (a row already there, e.g. sent, stays as it is).
_WRITTEN = f"INSERT INTO tt10_uploads ({_COLS}) VALUES ({{v}}) ON CONFLICT (file) DO NOTHING"
# A try: the row's new state, one more attempt; inserted whole when the written row is missing.
_TRIED = (
    f"INSERT INTO tt10_uploads ({_COLS}) VALUES ({{v}}) ON CONFLICT (file) DO UPDATE SET "
    "state = excluded.state, attempts = tt10_uploads.attempts + 1, target = excluded.target, "
    "last_attempt_at = excluded.last_attempt_at, sent_at = excluded.sent_at, error = excluded.error "
    "WHERE tt10_uploads.state <> 'sent'"
)


def _params(e: UploadEvent, t: Any) -> tuple[object, ...]:
    state = {"written": "pending", "sent": "sent", "failed": "failed"}[e.kind]
    tried = e.kind != "written"
    return (e.file, e.site, e.sensor, e.station, t(e.cycle), state, 1 if tried else 0, e.bytes, e.target,
            t(e.at), t(e.at) if tried else None, t(e.at) if e.kind == "sent" else None,
            e.error[:500] if e.error else None)


class UploadLogStore(Protocol):
    def write(self, events: Sequence[UploadEvent]) -> None:
        """All of ``events`` in one transaction, in order; ``StoreUnavailable`` when not."""
        ...

    def check(self) -> None:
        """``FeedConfigError`` when the table is missing (not migrated)."""
        ...


def _split(events: Sequence[UploadEvent]) -> list[tuple[bool, list[UploadEvent]]]:
    """Runs of written / tried events, in order (one executemany per run)."""
    runs: list[tuple[bool, list[UploadEvent]]] = []
    for e in events:
        tried = e.kind != "written"
        if runs and runs[-1][0] == tried:
            runs[-1][1].append(e)
        else:
            runs.append((tried, [e]))
    return runs


_MISSING = ("smartward db migrate has not created table tt10_uploads "
            "(chưa chạy / run `smartward db migrate`)")


class SqliteUploadLog:
    def __init__(self, path: str, *, timeout_s: float = 10.0) -> None:
        self.path = path
        self._timeout_s = timeout_s

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)

    def check(self) -> None:
        try:
            conn = self._connect()
            try:
                conn.execute("SELECT 1 FROM tt10_uploads LIMIT 1").fetchall()
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise FeedConfigError(_MISSING) from exc
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def write(self, events: Sequence[UploadEvent]) -> None:
        if not events:
            return
        marks = ", ".join("?" * 13)
        try:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                for tried, run in _split(events):
                    sql = (_TRIED if tried else _WRITTEN).format(v=marks)
                    conn.executemany(sql, [_params(e, sqlite_time) for e in run])
                conn.execute("COMMIT")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc


class PostgresUploadLog:
    def __init__(self, url: str, *, connect_timeout_s: int = 10) -> None:
        self.url = url
        self._connect_timeout_s = connect_timeout_s

    def check(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=self._connect_timeout_s) as conn:
                conn.execute("SELECT 1 FROM tt10_uploads LIMIT 1").fetchall()
        except psycopg.errors.UndefinedTable as exc:
            raise FeedConfigError(_MISSING) from exc
        except psycopg.Error as exc:
            raise StoreUnavailable(f"postgresql: {exc}") from exc

    def write(self, events: Sequence[UploadEvent]) -> None:
        import psycopg

        if not events:
            return
        marks = ", ".join(["%s"] * 13)
        try:
            with psycopg.connect(self.url, connect_timeout=self._connect_timeout_s) as conn, \
                    conn.transaction(), conn.cursor() as cur:
                for tried, run in _split(events):
                    sql = (_TRIED if tried else _WRITTEN).format(v=marks)
                    cur.executemany(sql, [_params(e, lambda t: t) for e in run])
        except psycopg.Error as exc:
            raise StoreUnavailable(f"postgresql: {exc}") from exc


class MemoryUploadLog:
    """The fake: rows by file, as the SQL adapters keep them."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.down = False

    def check(self) -> None:
        return None

    def write(self, events: Sequence[UploadEvent]) -> None:
        if self.down:
            raise StoreUnavailable("memory log is down")
        for e in events:
            keys = [c.strip() for c in _COLS.split(",")]
            values = dict(zip(keys, _params(e, lambda t: t), strict=True))
            row = self.rows.get(e.file)
            if row is None:
                self.rows[e.file] = values
            elif e.kind != "written" and row["state"] != "sent":
                for k in ("state", "target", "last_attempt_at", "sent_at", "error"):
                    row[k] = values[k]
                row["attempts"] += 1


def open_upload_log(url: str) -> UploadLogStore:
    if url.startswith("sqlite:///"):
        return SqliteUploadLog(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresUploadLog(url)
    raise ValueError(f"unsupported SMARTWARD_DB_URL scheme: {url.split(':', 1)[0]!r}")


class UploadLog:
    """The log as the runner uses it: events that the database refused are kept (at most
    ``MAX_UNLOGGED``, the oldest dropped past it and counted) and written before the next."""

    def __init__(self, store: UploadLogStore, *, max_unlogged: int = MAX_UNLOGGED) -> None:
        self.store = store
        self._unlogged: deque[UploadEvent] = deque()
        self._max = max_unlogged
        self.dropped = 0

    @property
    def unlogged(self) -> int:
        return len(self._unlogged)

    def record(self, events: Sequence[UploadEvent]) -> bool:
        """True when everything so far is in the database."""
        self._unlogged.extend(events)
        while len(self._unlogged) > self._max:
            self._unlogged.popleft()
            self.dropped += 1
        if not self._unlogged:
            return True
        batch = list(self._unlogged)
        try:
            self.store.write(batch)
        except StoreUnavailable as exc:
            logger.warning("tt10 upload log not written (%d events kept for the next try): %s",
                           len(batch), exc)
            return False
        self._unlogged.clear()
        return True
