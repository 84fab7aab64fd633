"""``PostgresStore``: PostgreSQL with or without TimescaleDB, decided at ``migrate``.

On a fresh database ``migrate`` runs ``CREATE EXTENSION IF NOT EXISTS timescaledb`` when the
server has the extension (and ``timescaledb=None``, the default): ``readings`` becomes a
hypertable on ``time``. Under the Timescale license (``SHOW timescaledb.license``) the
rollups are continuous aggregates; under the Apache license (Debian's package) and on plain
PostgreSQL they are the platform's own (``ingest/rollup.py``). The flavor chosen is recorded
in ``schema_migrations`` and kept from then on.

Write path, one transaction per ``write`` (the rules are in ``writeplan.py``):

1. claim every ``(gateway, seq)``: ``INSERT INTO ingest_batches ... ON CONFLICT DO NOTHING
   RETURNING`` says which are new; the others' outcome and digest are read back;
2. the readings of the batches to store go straight into ``readings`` with one binary
   ``COPY`` (multi-row inserts: as fast as PostgreSQL takes rows in), under a savepoint;
3. only if a key already exists (``UniqueViolation``: a re-sent reading, a conflict, another
   worker's batch with the same readings) the savepoint is rolled back and the careful path
   runs: the readings are staged in a session-local temporary table, the stored rows that
   differ from staged ones are read, conflicting batches become ``conflict`` dead letters,
   and the rest goes in with ``INSERT ... ON CONFLICT DO NOTHING``;
4. dead letters and (optionally) ack watermarks are written; commit.

Every reading carries the id of the batch that stored it, and ``ingest_batches`` records the
writing transaction: that is the *stored stream*, which the rollups (``refresh_rollups``) and
the InfluxDB mirror (``read_since``) follow from their own checkpoints. An unsequenced batch
(SenML) claims nothing: it gets an id from the same sequence and an ``ingest_unsequenced``
row instead, and is in the stream all the same.

The statements are in ``postgres_sql.py``; migrations and the flavor in ``postgres_schema.py``;
the stream, rollups, retention, registry and queries in ``postgres_upkeep.py``.

Connections come from a ``psycopg_pool.ConnectionPool`` with ``check=`` (docs/reliability.md: a pool
without it hands out dead connections after a database restart); the pool reconnects with
backoff by itself. Errors are translated: no connection, a lost connection, a timeout, a
deadlock -> ``StoreUnavailable`` (retry); anything else -> ``StoreError``.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ingest.errors import IngestError, StoreError, StoreUnavailable
from ingest.migrations import Flavor
from ingest.ports import DeadLetter, ValidBatch, WriteResult
from ingest.stores import writeplan
from ingest.stores.postgres_schema import PostgresSchema
from ingest.stores.postgres_sql import (
    CLAIM,
    DIFFERING,
    INSERT_DEAD,
    INSERT_READINGS,
    INSERT_UNSEQUENCED,
    MARK_CONFLICTS,
    PREVIOUS,
    READINGS_COPY,
    READINGS_TYPES,
    SAVE_MARKS,
    SESSION_SETUP,
    STAGE_COPY,
    STAGE_TYPES,
    UNSEQUENCED_IDS,
)
from ingest.stores.postgres_upkeep import PostgresUpkeep

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]
Cursor = psycopg.Cursor[tuple[Any, ...]]

# A pooled connection used successfully this recently is handed out without a round trip.
_CHECK_IDLE_S = 1.0


def _rollback(conn: Connection) -> None:
    """End a failed transaction so the connection goes back to the pool clean (a broken one
    is discarded by the pool anyway)."""
    if not conn.broken and not conn.closed:
        with suppress(psycopg.Error):
            conn.rollback()


def _configure(conn: Connection) -> None:
    conn.execute(SESSION_SETUP)
    conn.commit()


class PostgresStore(PostgresSchema, PostgresUpkeep):
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        acquire_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        statement_timeout_ms: int = 60_000,
        reconnect_timeout_s: float = 2.0,
        timescaledb: bool | None = None,
        name: str = "smartward-store",
    ) -> None:
        """``timescaledb``: None uses the extension when the server has it, True requires it,
        False never creates it. ``acquire_timeout_s`` bounds how long a call waits for a
        connection before raising ``StoreUnavailable`` (also while the database is down).
        The pool retries connecting with backoff; after ``reconnect_timeout_s`` of failures it
        gives up that attempt and starts a new one when a call asks for a connection. Short on
        purpose: the pool's backoff doubles (1, 2, 4, 8 s...), so a long attempt reaches a
        database that came back, or a standby just promoted, seconds late; a short one leaves
        the pace to the callers' own retries (docs/reliability.md H2)."""
        self.url = url
        self._last_ok: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()
        self._timescaledb = timescaledb
        self._flavor: Flavor | None = None
        self._kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout_s)),
            "application_name": name,
            # UTC sessions: timestamptz text and day boundaries are the same everywhere. A
            # statement that hangs (a locked table, docs/reliability.md R7) ends as an error.
            "options": f"-c timezone=UTC -c statement_timeout={statement_timeout_ms}",
            # A peer that vanished without a FIN (a cut link) is noticed within seconds.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,
        }
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            kwargs=self._kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=_configure,
            check=self._check,
            timeout=acquire_timeout_s,
            reconnect_timeout=reconnect_timeout_s,
            name=name,
        )
        # Not waiting: the store can be built while the database is down; calls then raise
        # StoreUnavailable until the pool has connected.
        self._pool.open(wait=False)

    # --- plumbing ------------------------------------------------------------------------

    def _check(self, conn: Connection) -> None:
        """The pool's ``check=`` (docs/reliability.md: without one a pool hands out dead connections
        after a database restart). A round trip only for a connection idle for more than
        ``_CHECK_IDLE_S``: the writer takes a connection for every transaction, and an extra
        round trip each time was a fifth of its wall time with small transactions. A
        connection that died in the last second fails its next statement instead, which is
        ``StoreUnavailable`` (the caller retries) and the pool discards it."""
        if conn.broken or conn.closed:
            raise psycopg.OperationalError("connection closed")
        last = self._last_ok.get(conn)
        if last is not None and time.monotonic() - last < _CHECK_IDLE_S:
            return
        ConnectionPool.check_connection(conn)

    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[Connection]:
        try:
            with self._pool.connection(timeout=timeout) as conn:
                yield conn
                if not conn.broken:
                    self._last_ok[conn] = time.monotonic()
        except PoolTimeout as exc:
            raise StoreUnavailable(f"postgresql: no connection: {exc}") from exc
        except PoolClosed as exc:
            raise StoreError(f"postgresql: store closed: {exc}") from exc
        except psycopg.OperationalError as exc:
            # Connection lost, admin shutdown, statement or lock timeout, deadlock,
            # serialization failure, out of disk: all worth retrying.
            raise StoreUnavailable(f"postgresql: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"postgresql: {exc}") from exc

    # --- Store protocol --------------------------------------------------------------------

    def write(self, batches: Sequence[ValidBatch], dead: Sequence[DeadLetter], *,
              watermarks: Mapping[str, int] | None = None) -> WriteResult:
        plan = writeplan.plan_write(batches, dead)
        if plan.empty and not watermarks:
            return WriteResult()
        self.flavor()  # a clear error when the schema is not there
        with self._connection() as conn:
            try:
                return self._write(conn, plan, watermarks, careful=False)
            except psycopg.errors.UniqueViolation:
                # A reading key exists already (a re-sent reading, a conflict, another
                # worker's batch with the same readings): nothing of this transaction is
                # kept; do it again the careful way. Rare, so the common path carries no
                # savepoint (two round trips per write).
                _rollback(conn)
            return self._write(conn, plan, watermarks, careful=True)

    def _write(self, conn: Connection, plan: writeplan.Plan, watermarks: Mapping[str, int] | None,
               *, careful: bool) -> WriteResult:
        """One transaction in as few round trips as the protocol allows: BEGIN and the claims
        in one pipeline, the readings' COPY, then dead letters, watermarks and COMMIT in one
        pipeline. Rolled back on any error."""
        try:
            result = self._write_txn(conn, plan, watermarks, careful)
        except BaseException:
            _rollback(conn)
            raise
        return result

    def _write_txn(self, conn: Connection, plan: writeplan.Plan, watermarks: Mapping[str, int] | None,
                   careful: bool) -> WriteResult:
        cur = conn.cursor()
        new_keys: set[writeplan.BatchKey] = set()
        ids: dict[writeplan.BatchKey, int] = {}
        previous: dict[writeplan.BatchKey, writeplan.Previous] = {}
        claims = plan.claims
        if claims:
            with conn.pipeline():  # BEGIN rides along
                cur.execute(CLAIM, (
                    [c.gateway for c in claims], [c.seq for c in claims], [c.site for c in claims],
                    [c.received_at for c in claims], [c.readings for c in claims],
                    [c.outcome for c in claims], [c.digest for c in claims]))
            ids = {(g, s): i for g, s, i in cur.fetchall()}
            new_keys = set(ids)
            refused = [c.key for c in claims if c.key not in new_keys]
            if refused:
                cur.execute(PREVIOUS, ([g for g, _ in refused], [s for _, s in refused]))
                previous = {(g, s): writeplan.Previous(o, bytes(d)) for g, s, o, d in cur.fetchall()}
        settled = writeplan.settle(plan, new_keys, previous)
        result = WriteResult(duplicate_batches=settled.duplicates, handled=settled.handled)

        conflicts: dict[int, DeadLetter] = {}
        if settled.store:
            # An unsequenced batch (SenML) has no ingest_batches row: it gets an id of the same
            # sequence and an ingest_unsequenced row, so it is in the stored stream all the same.
            n_loose = sum(not vb.sequenced for vb in settled.store)
            loose = iter([i for (i,) in cur.execute(UNSEQUENCED_IDS, (n_loose,)).fetchall()]
                         if n_loose else [])
            batch_ids = [ids[(vb.batch.gateway, vb.batch.seq)] if vb.sequenced else next(loose)
                         for vb in settled.store]
            if careful:
                conflicts, inserted = self._insert_checked(cur, settled.store, batch_ids)
            else:
                # The normal case: no reading key exists yet. COPY straight into readings
                # (multi-row inserts: the fastest way in); a UniqueViolation sends the whole
                # call down the careful path (``write``).
                inserted = self._copy_readings(cur, settled.store, batch_ids)
            result.stored_readings = inserted
            result.stored_batches = len(settled.store) - len(conflicts)
            unsequenced = [(batch_id, vb.batch.gateway, vb.site, vb.received_at, len(vb.batch.readings))
                           for i, (vb, batch_id) in enumerate(zip(settled.store, batch_ids, strict=True))
                           if not vb.sequenced and i not in conflicts]

        else:
            unsequenced = []
        letters = [*settled.letters, *conflicts.values()]
        with conn.pipeline():
            if unsequenced:
                cur.executemany(INSERT_UNSEQUENCED, unsequenced)
            if conflicts:
                cur.execute(MARK_CONFLICTS, ([d.gateway for d in conflicts.values()],
                                              [d.seq for d in conflicts.values()]))
            if letters:
                cur.executemany(INSERT_DEAD, [
                    (d.received_at, d.topic, d.gateway, d.site, d.seq, d.reason, d.detail, d.payload,
                     d.once_key)
                    for d in letters])
            if watermarks:
                self._save_marks(cur, watermarks)
            conn.commit()
        result.dead_letters = letters
        return result

    @staticmethod
    def _copy_readings(cur: Cursor, batches: Sequence[ValidBatch], batch_ids: Sequence[int | None]) -> int:
        with cur.copy(READINGS_COPY) as copy:
            copy.set_types(READINGS_TYPES)
            write_row = copy.write_row
            for vb, batch_id in zip(batches, batch_ids, strict=True):
                site, gateway = vb.site, vb.batch.gateway
                for r in vb.batch.readings:
                    write_row((r.ts, site, gateway, r.sensor, r.metric, r.value, r.quality, batch_id))
        return cur.rowcount

    def _insert_checked(self, cur: Cursor, batches: Sequence[ValidBatch],
                        batch_ids: Sequence[int | None]) -> tuple[dict[int, DeadLetter], int]:
        """Stage the readings, find the batches that conflict with stored readings or with each
        other, insert the rest with ON CONFLICT DO NOTHING (exact repeats are no-ops)."""
        with cur.copy(STAGE_COPY) as copy:
            copy.set_types(STAGE_TYPES)
            for i, (vb, batch_id) in enumerate(zip(batches, batch_ids, strict=True)):
                site, gateway = vb.site, vb.batch.gateway
                for r in vb.batch.readings:
                    copy.write_row((i, r.ts, site, gateway, r.sensor, r.metric, r.value, r.quality,
                                    batch_id))
        conflicts = writeplan.reading_conflicts(batches, self._differing(cur))
        if conflicts:
            cur.execute("DELETE FROM pg_temp.readings_stage WHERE b = ANY(%s)", (list(conflicts),))
        inserted = cur.execute(INSERT_READINGS).rowcount
        if self._differing(cur):
            # Only a concurrent transaction that committed other values for these keys since
            # the check above can do this. Retrying the whole call sees them and files conflicts.
            raise StoreUnavailable("postgresql: a concurrent write stored conflicting readings; retry")
        return conflicts, inserted

    @staticmethod
    def _differing(cur: Cursor) -> dict[writeplan.ReadingKey, writeplan.ReadingValue]:
        cur.execute(DIFFERING)
        return {(s, m, t): (v, q) for s, m, t, v, q in cur.fetchall()}

    def watermarks(self) -> dict[str, int]:
        with self._connection() as conn:
            return {gw: seq for gw, seq in conn.execute("SELECT gateway, seq FROM gateway_watermarks")}

    def save_watermarks(self, marks: dict[str, int]) -> None:
        with self._connection() as conn, conn.transaction():
            self._save_marks(conn.cursor(), marks)

    @staticmethod
    def _save_marks(cur: Cursor, marks: Mapping[str, int]) -> None:
        ordered = sorted(marks.items())  # one lock order for every writer: no deadlock
        cur.execute(SAVE_MARKS, ([g for g, _ in ordered], [s for _, s in ordered]))

    def record_dropped(self, gateway: str, through_seq: int, at: datetime) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute("INSERT INTO gateway_drops (gateway, through_seq, declared_at) VALUES (%s, %s, %s) "
                         "ON CONFLICT DO NOTHING", (gateway, through_seq, at))

    def handled_seqs(self, gateway: str, after: int, limit: int) -> list[int]:
        with self._connection() as conn:
            seqs = {s for (s,) in conn.execute(
                "SELECT seq FROM ingest_batches WHERE gateway = %s AND seq > %s ORDER BY seq LIMIT %s",
                (gateway, after, limit))}
            row = conn.execute("SELECT coalesce(max(through_seq), 0) FROM gateway_drops WHERE gateway = %s",
                               (gateway,)).fetchone()
        through = int(row[0]) if row else 0
        seqs.update(range(after + 1, min(through, after + limit) + 1))
        return sorted(seqs)[:limit]

    def ping(self, timeout_s: float = 2.0) -> bool:
        try:
            with self._connection(timeout=timeout_s) as conn:
                conn.execute("SELECT 1")
        except IngestError:
            return False
        return True

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
