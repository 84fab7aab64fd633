"""Where the service keeps its rule state between runs: one row per service name.

The row holds a snapshot of the rule engine, the incident manager and the seqs seen
(``ops_service_state``: ``name``, ``saved_at``, ``data``, zlib-compressed JSON). Written
periodically and at stop; a message is acknowledged to the broker only once a saved
snapshot covers it (see :mod:`ops_center.service.service`).

The service itself now reads and writes the snapshot through the ops repository
(``load_service_state``; the write is part of a step's transaction, ``commit_step``), on the
same table, created by the ops migration 0003. The stores below keep the table usable on its
own (inspection, tools, composition roots that still open one) and the fake for unit tests.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from ops_center.service.errors import ConfigError, StateUnavailable

TABLE = "ops_service_state"

_encoder = msgspec.json.Encoder()


def pack(state: dict[str, Any]) -> bytes:
    return zlib.compress(_encoder.encode(state), 1)


def unpack(data: bytes) -> dict[str, Any]:
    out = msgspec.json.decode(zlib.decompress(data))
    if not isinstance(out, dict):
        raise ValueError("service state is not an object")
    return out


class StateStore(Protocol):
    def load(self, name: str) -> bytes | None:
        """The last saved state of ``name``; None when there is none."""
        ...

    def save(self, name: str, data: bytes) -> None:
        """Replace the state of ``name`` (durably, before returning)."""
        ...

    def close(self) -> None: ...


class MemoryStateStore:
    """The fake (unit tests) and the choice of a run that must not outlive its process."""

    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}
        self.saves = 0

    def load(self, name: str) -> bytes | None:
        return self.rows.get(name)

    def save(self, name: str, data: bytes) -> None:
        self.rows[name] = data
        self.saves += 1

    def close(self) -> None:
        pass


class SqliteStateStore:
    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                         timeout=busy_timeout_ms / 1000)
            self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, "
                               "saved_at TEXT NOT NULL, data BLOB NOT NULL)")
        except sqlite3.Error as exc:
            raise StateUnavailable(f"sqlite: {exc}") from exc

    def load(self, name: str) -> bytes | None:
        with self._lock:
            try:
                row = self._conn.execute(f"SELECT data FROM {TABLE} WHERE name = ?", (name,)).fetchone()
            except sqlite3.Error as exc:
                raise StateUnavailable(f"sqlite: {exc}") from exc
        return None if row is None else bytes(row[0])

    def save(self, name: str, data: bytes) -> None:
        at = datetime.now(UTC).isoformat()
        with self._lock:
            try:
                self._conn.execute(
                    f"INSERT INTO {TABLE} (name, saved_at, data) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at, data = excluded.data",
                    (name, at, data))
            except sqlite3.Error as exc:
                raise StateUnavailable(f"sqlite: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStateStore:
    """One connection, reopened after a failure (the snapshot is written from one thread)."""

    def __init__(self, url: str, *, connect_timeout_s: int = 5) -> None:
        self._url = url
        self._timeout = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: Any = None
        self._ddl_done = False

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._timeout)
            if not self._ddl_done:
                self._conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (name text PRIMARY KEY, "
                                   "saved_at timestamptz NOT NULL, data bytea NOT NULL)")
                self._ddl_done = True
        return self._conn

    def load(self, name: str) -> bytes | None:
        import psycopg

        with self._lock:
            try:
                row = self._connection().execute(f"SELECT data FROM {TABLE} WHERE name = %s",
                                                 (name,)).fetchone()
            except psycopg.Error as exc:
                raise StateUnavailable(f"postgresql: {exc}") from exc
        return None if row is None else bytes(row[0])

    def save(self, name: str, data: bytes) -> None:
        import psycopg

        with self._lock:
            try:
                self._connection().execute(
                    f"INSERT INTO {TABLE} (name, saved_at, data) VALUES (%s, now(), %s) "
                    "ON CONFLICT (name) DO UPDATE SET saved_at = excluded.saved_at, data = excluded.data",
                    (name, data))
            except psycopg.Error as exc:
                raise StateUnavailable(f"postgresql: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def open_state_store(url: str) -> StateStore:
    """The state store for ``SMARTWARD_DB_URL`` (``sqlite:///path`` or ``postgresql://...``)."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SqliteStateStore(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStateStore(url)
    raise ConfigError(f"unsupported SMARTWARD_DB_URL for the service state: {url.split(':', 1)[0]!r}")
