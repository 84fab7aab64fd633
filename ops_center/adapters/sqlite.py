"""``SqliteOpsRepository``: the ops tables in the embedded SQLite store (``sqlite:///path``),
the same file the ingest writes (``smartward demo``, a single small ward).

Writes go through one connection under a lock (SQLite has one writer at a time anyway);
reads through a small pool of read-only connections, each unit of work in one read
transaction (one snapshot): in WAL mode readers and the writer do not block each other, and
the sqlite3 module releases the GIL while a query runs, so a slow read (an overview's batch
statistics) no longer holds up every request's user lookup. An in-memory database exists
only on its one connection, which then serves the reads too. Times are the ingest's text
format (``2026-11-28T04:59:58.000000Z``), so comparisons with ``readings.time`` and
rollup buckets are plain text comparisons on their keys.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from ops_center.adapters.errors import Conflict, RepositoryError, RepositoryUnavailable
from ops_center.adapters.migrations import TABLE, migrations_for
from ops_center.adapters.sql import SqlOpsRepository
from ops_center.adapters.sql_base import Row

_TRANSIENT: Final = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
}


def sqlite_time(t: datetime) -> str:
    """The stored form of an aware datetime (the ingest's: ``2026-11-28T04:59:58.000000Z``)."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: times must be aware")
    return t.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def path_from_url(url: str) -> str:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"not a sqlite URL (sqlite:///path): {url!r}")
    return url[len(prefix) :]


def _translate(exc: sqlite3.Error) -> RepositoryError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    # A missing table means "not migrated yet" (the ingest's tables): transient for readiness.
    if primary in _TRANSIENT or "no such table" in str(exc):
        return RepositoryUnavailable(f"sqlite: {exc}")
    return RepositoryError(f"sqlite: {exc}")


class _Exec:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @staticmethod
    def _q(query: str) -> str:
        return query.replace("%s", "?")

    def rows(self, query: str, params: Sequence[object] = ()) -> list[Row]:
        return list(self._conn.execute(self._q(query), tuple(params)).fetchall())

    def one(self, query: str, params: Sequence[object] = ()) -> Row | None:
        row: Row | None = self._conn.execute(self._q(query), tuple(params)).fetchone()
        return row

    def run(self, query: str, params: Sequence[object] = ()) -> None:
        self._conn.execute(self._q(query), tuple(params))


class SqliteOpsRepository(SqlOpsRepository):
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000, max_readers: int = 8) -> None:
        super().__init__()
        self.path = str(path)
        self._timeout_s = busy_timeout_ms / 1000
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._timeout_s
            )
            self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        self._exec = _Exec(self._conn)
        self._in_memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        self._readers = threading.BoundedSemaphore(max_readers)
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> SqliteOpsRepository:
        return cls(path_from_url(url))

    # --- hooks ----------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[_Exec]:
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield self._exec
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"sqlite: {exc}") from exc
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[_Exec]:
        if self._in_memory:
            with self._lock:
                try:
                    yield self._exec
                except sqlite3.Error as exc:
                    raise _translate(exc) from exc
            return
        with self._readers:
            conn = self._reader()
            try:
                conn.execute("BEGIN")
                try:
                    yield _Exec(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")  # read-only: nothing to commit
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            finally:
                with self._pool_lock:
                    if self._closed:
                        conn.close()
                    else:
                        self._idle.append(conn)

    def _reader(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise RepositoryUnavailable("sqlite: repository closed")
            if self._idle:
                return self._idle.pop()
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._timeout_s
            )
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return conn

    def _t(self, value: datetime) -> object:
        return sqlite_time(value)

    def _sites_param(self, sites: Sequence[str]) -> object:
        return json.dumps(list(sites))

    def _sites_value(self, value: object) -> tuple[str, ...]:
        return tuple(json.loads(str(value)))

    # --- lifecycle ------------------------------------------------------------------------

    def migrate(self) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            for m in migrations_for("sqlite"):
                with self._tx():
                    c = self._conn
                    if c.execute(f"SELECT 1 FROM {TABLE} WHERE version = ?", (m.version,)).fetchone():
                        continue
                    for statement in _statements(m.sql):
                        c.execute(statement)
                    c.execute(
                        f"INSERT INTO {TABLE} VALUES (?, ?, ?)",
                        (m.version, m.name, sqlite_time(datetime.now(UTC))),
                    )

    def ping(self) -> bool:
        try:
            with self._lock:
                self._conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:  # a reader in use is closed when it comes back
            conn.close()
        with self._lock:
            self._conn.close()


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration, one at a time (``executescript`` would commit).
    A trigger body's inner ``;`` does not end the statement: ``complete_statement`` knows."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        raise RepositoryError(f"incomplete statement at the end of a migration: {buf[:80]!r}")
