"""The readings of the stations' sensors, from the store (the ingest's ``readings`` table), by
SQL: the feed reads the store, never the broker, and shares no code with the ingest
(docs/style.md: components talk through the store).

``ReadingSource`` is the port; ``SqliteReadings`` (``sqlite:///path``) and
``PostgresReadings`` (``postgresql://...``, plain PostgreSQL or TimescaleDB; a multi-host URL
follows the primary) are the adapters; ``MemoryReadings`` is the fake for unit tests.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from feeds.errors import StoreUnavailable
from feeds.tt10.cycles import Reading

# One query reads at most this many rows (a day of three 7-metric stations at one reading
# every 10 s is about 180 000): a bounded answer, and a clear error past it.
MAX_ROWS = 500_000


class ReadingSource(Protocol):
    def readings(self, sensors: Sequence[str], start: datetime, end: datetime) -> list[Reading]:
        """The readings of ``sensors`` with start <= time < end, oldest first."""
        ...

    def close(self) -> None: ...


def sqlite_time(t: datetime) -> str:
    """The ingest's stored form of a time in SQLite: ``2026-11-28T04:59:58.000000Z``."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: times must be aware")
    return t.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _utc(value: object) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _rows(rows: Iterable[tuple[Any, ...]]) -> list[Reading]:
    out = [Reading(_utc(r[0]), str(r[1]), str(r[2]), float(r[3]), str(r[4])) for r in rows]
    if len(out) > MAX_ROWS:
        raise StoreUnavailable(f"more than {MAX_ROWS} readings in one query: narrow the range")
    return out


_SQL = ("SELECT time, sensor, metric, value, quality FROM readings "
        "WHERE sensor IN ({marks}) AND time >= {p} AND time < {p} ORDER BY time LIMIT {limit}")


class SqliteReadings:
    def __init__(self, path: str, *, timeout_s: float = 10.0) -> None:
        self.path = path
        self._timeout_s = timeout_s

    @classmethod
    def from_url(cls, url: str) -> SqliteReadings:
        prefix = "sqlite:///"
        if not url.startswith(prefix):
            raise ValueError(f"not a sqlite URL: {url!r}")
        return cls(url[len(prefix):])

    def readings(self, sensors: Sequence[str], start: datetime, end: datetime) -> list[Reading]:
        if not sensors:
            return []
        sql = _SQL.format(marks=", ".join("?" * len(sensors)), p="?", limit=MAX_ROWS + 1)
        try:
            # Read-only, one connection per query: the feed holds nothing open between cycles.
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self._timeout_s)
            try:
                rows = conn.execute(sql, [*sensors, sqlite_time(start), sqlite_time(end)]).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
        return _rows(rows)

    def close(self) -> None:
        return None


class PostgresReadings:
    def __init__(self, url: str, *, connect_timeout_s: int = 10) -> None:
        self.url = url
        self._connect_timeout_s = connect_timeout_s

    def readings(self, sensors: Sequence[str], start: datetime, end: datetime) -> list[Reading]:
        import psycopg

        if not sensors:
            return []
        sql = _SQL.format(marks=", ".join(["%s"] * len(sensors)), p="%s", limit=MAX_ROWS + 1)
        try:
            with psycopg.connect(self.url, connect_timeout=self._connect_timeout_s) as conn:
                conn.read_only = True
                rows = conn.execute(sql, [*sensors, start, end]).fetchall()
        except psycopg.Error as exc:
            raise StoreUnavailable(f"postgresql: {exc}") from exc
        return _rows(rows)

    def close(self) -> None:
        return None


class MemoryReadings:
    def __init__(self, rows: Iterable[Reading] = ()) -> None:
        self.rows = list(rows)

    def readings(self, sensors: Sequence[str], start: datetime, end: datetime) -> list[Reading]:
        wanted = set(sensors)
        return sorted((r for r in self.rows if r.sensor in wanted and start <= r.time < end),
                      key=lambda r: r.time)

    def close(self) -> None:
        return None


def open_readings(url: str) -> ReadingSource:
    if url.startswith("sqlite:"):
        return SqliteReadings.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresReadings(url)
    raise ValueError(f"unsupported SMARTWARD_DB_URL scheme: {url.split(':', 1)[0]!r}")
