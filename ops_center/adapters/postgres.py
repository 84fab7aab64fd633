"""``PostgresOpsRepository``: the ops tables in PostgreSQL, with or without TimescaleDB.

A ``psycopg_pool`` pool with ``check=`` (docs/reliability.md: without it the pool hands out dead
connections after a database restart); pool timeouts and connection errors become
``RepositoryUnavailable`` (transient: the API answers 503 and readiness goes red).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Final

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ops_center.adapters.errors import Conflict, RepositoryError, RepositoryUnavailable
from ops_center.adapters.migrations import TABLE, migrations_for
from ops_center.adapters.records import LatestValue
from ops_center.adapters.sql import SqlOpsRepository
from ops_center.adapters.sql_base import Row, utc
from ops_center.adapters.sql_readings import SqlReadingsReader

# pg_advisory_xact_lock key serialising concurrent `migrate` runs (several API processes).
_MIGRATE_LOCK: Final = 0x5357_4F50  # "SWOP"


def _translate(exc: Exception) -> RepositoryError:
    if isinstance(
        exc,
        PoolTimeout
        | psycopg.OperationalError
        | pg_errors.UndefinedTable
        | pg_errors.UndefinedColumn
        | pg_errors.AdminShutdown
        | pg_errors.CannotConnectNow,
    ):
        return RepositoryUnavailable(f"postgresql: {exc}")
    if isinstance(exc, psycopg.IntegrityError):
        return Conflict(f"postgresql: {exc}")
    return RepositoryError(f"postgresql: {exc}")


class _Exec:
    def __init__(self, cur: psycopg.Cursor[Row]) -> None:
        self._cur = cur

    def rows(self, query: str, params: Sequence[object] = ()) -> list[Row]:
        self._cur.execute(query.encode(), tuple(params))
        return list(self._cur.fetchall())

    def one(self, query: str, params: Sequence[object] = ()) -> Row | None:
        self._cur.execute(query.encode(), tuple(params))
        return self._cur.fetchone()

    def run(self, query: str, params: Sequence[object] = ()) -> None:
        self._cur.execute(query.encode(), tuple(params))


class PostgresOpsRepository(SqlOpsRepository):
    _for_update = " FOR UPDATE"
    _greatest = "GREATEST"
    _payload_len = "octet_length(payload)"
    _payload_head = "substring(payload from 1 for 512)"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 16, timeout_s: float = 5.0) -> None:
        super().__init__()
        self.url = url
        self._timeout_s = timeout_s
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            check=ConnectionPool.check_connection,
            timeout=timeout_s,
            # Give up a failing reconnection attempt after 2 s, before the pool's doubling
            # backoff grows: the next request starts a new one at once, so a standby just
            # promoted is reached within a second or so (docs/reliability.md H2).
            reconnect_timeout=2.0,
            # autocommit: a read is its statements (READ COMMITTED gives each its own snapshot
            # anyway), so it leaves no transaction for the pool to roll back on return, one
            # round trip fewer; writes run in explicit transactions (``_tx``).
            kwargs={"connect_timeout": max(1, int(timeout_s)), "autocommit": True},
            name="smartward-ops",
        )

    def open(self) -> None:
        # wait=False: the API starts (and answers /readyz red) even while the database is down.
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresOpsRepository:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- hooks ----------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[_Exec]:
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield _Exec(cur)
        except (psycopg.Error, PoolTimeout) as exc:
            raise _translate(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[_Exec]:
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield _Exec(cur)
        except (psycopg.Error, PoolTimeout) as exc:
            raise _translate(exc) from exc

    def _t(self, value: datetime) -> object:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: times must be aware")
        return value

    def _sites_param(self, sites: Sequence[str]) -> object:
        return list(sites)

    def _sites_value(self, value: object) -> tuple[str, ...]:
        return tuple(value) if isinstance(value, list | tuple) else ()

    # --- lifecycle ------------------------------------------------------------------------

    def migrate(self) -> None:
        try:
            with self._pool.connection() as conn:
                for m in migrations_for("postgresql"):
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                        conn.execute(
                            f"CREATE TABLE IF NOT EXISTS {TABLE} (version integer PRIMARY KEY, "
                            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                        )
                        if conn.execute(f"SELECT 1 FROM {TABLE} WHERE version = %s", (m.version,)).fetchone():
                            continue
                        conn.execute(m.sql.encode())  # no parameters: a multi-statement script
                        conn.execute(
                            f"INSERT INTO {TABLE} (version, name) VALUES (%s, %s)", (m.version, m.name)
                        )
        except (psycopg.Error, PoolTimeout) as exc:
            raise _translate(exc) from exc

    def ping(self) -> bool:
        try:
            with self._pool.connection(timeout=2.0) as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout):
            return False
        return True

    def _readings_reader(self) -> SqlReadingsReader:
        return PostgresReadingsReader(self)


class PostgresReadingsReader(SqlReadingsReader):
    def latest_values(self, pairs: Sequence[tuple[str, str]], since: datetime) -> list[LatestValue]:
        """One round trip: a LATERAL index probe per (sensor, metric) on the readings key
        (sensor, metric, time), newest first; TimescaleDB stops at the newest chunk."""
        if not pairs:
            return []
        sensors = [p[0] for p in pairs]
        metrics = [p[1] for p in pairs]
        with self._db._read() as x:
            rows = x.rows(
                "SELECT p.sensor, p.metric, r.time, r.value, r.quality "
                "FROM unnest(%s::text[], %s::text[]) AS p(sensor, metric) "
                "CROSS JOIN LATERAL (SELECT time, value, quality FROM readings "
                '  WHERE sensor = p.sensor COLLATE "C" AND metric = p.metric COLLATE "C" AND time >= %s '
                "  ORDER BY time DESC LIMIT 1) r",
                (sensors, metrics, since),
            )
        return [LatestValue(r[0], r[1], utc(r[2]), float(r[3]), str(r[4])) for r in rows]
