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

Connections come from a ``psycopg_pool.ConnectionPool`` with ``check=`` (RELIABILITY: a pool
without it hands out dead connections after a database restart); the pool reconnects with
backoff by itself. Errors are translated: no connection, a lost connection, a timeout, a
deadlock -> ``StoreUnavailable`` (retry); anything else -> ``StoreError``.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from contract.registry import Registry
from ingest.errors import IngestError, StoreError, StoreUnavailable
from ingest.migrations import Flavor, migrations_for
from ingest.ports import DeadLetter, ValidBatch, WriteResult
from ingest.rollup import DEFAULT_MAX_ROWS
from ingest.stores import writeplan
from ingest.stores.records import (
    ROLLUP_QUALITIES,
    Completeness,
    Resolution,
    RetentionResult,
    RollupRow,
    SeqGap,
    StoredDeadLetter,
    StoredReading,
)
from ingest.stores.registry_rows import registry_rows

if TYPE_CHECKING:
    from ingest.mirror import MirrorPage

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]
Cursor = psycopg.Cursor[tuple[Any, ...]]

# A pooled connection used successfully this recently is handed out without a round trip.
_CHECK_IDLE_S = 1.0

# Advisory lock keys (any constant bigint unique to this use).
_MIGRATE_LOCK = 0x534D_5744_0001  # "SMWD" 1
_ROLLUP_LOCK = 0x534D_5744_0002

# Session-local staging for the careful write path, made once per pooled connection. ON
# COMMIT DELETE ROWS empties it at every commit without the catalog churn of creating and
# dropping a table per write.
_SESSION_SETUP = b"""
CREATE TEMP TABLE IF NOT EXISTS readings_stage (
    b        integer NOT NULL,
    batch_id bigint,
    time    timestamptz NOT NULL,
    site    text COLLATE "C" NOT NULL,
    gateway text COLLATE "C" NOT NULL,
    sensor  text COLLATE "C" NOT NULL,
    metric  text COLLATE "C" NOT NULL,
    value   double precision NOT NULL,
    quality text COLLATE "C" NOT NULL
) ON COMMIT DELETE ROWS;
"""

_READINGS_COPY = ("COPY readings (time, site, gateway, sensor, metric, value, quality, batch_id) "
                  "FROM STDIN (FORMAT BINARY)")
_READINGS_TYPES = ["timestamptz", "text", "text", "text", "text", "float8", "text", "int8"]

_STAGE_COPY = ("COPY pg_temp.readings_stage (b, time, site, gateway, sensor, metric, value, quality, "
               "batch_id) FROM STDIN (FORMAT BINARY)")
_STAGE_TYPES = ["int4", "timestamptz", "text", "text", "text", "text", "float8", "text", "int8"]

_CLAIM = """
INSERT INTO ingest_batches (gateway, seq, site, received_at, readings, outcome, digest)
SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::timestamptz[], %b::int[], %b::text[],
                     %b::bytea[])
ON CONFLICT (gateway, seq) DO NOTHING
RETURNING gateway, seq, id
"""

_PREVIOUS = """
SELECT gateway, seq, outcome, digest FROM ingest_batches
WHERE (gateway, seq) IN (SELECT * FROM unnest(%b::text[], %b::bigint[]))
"""

_INSERT_READINGS = """
INSERT INTO readings (time, site, gateway, sensor, metric, value, quality, batch_id)
SELECT time, site, gateway, sensor, metric, value, quality, batch_id FROM pg_temp.readings_stage
ON CONFLICT (sensor, metric, time) DO NOTHING
"""

# Stored rows that differ from a staged one: all the slow path needs to find conflicts.
_DIFFERING = """
SELECT DISTINCT r.sensor, r.metric, r.time, r.value, r.quality
FROM pg_temp.readings_stage s
JOIN readings r ON r.sensor = s.sensor AND r.metric = s.metric AND r.time = s.time
WHERE r.value <> s.value OR r.quality <> s.quality
"""

_MARK_CONFLICTS = """
UPDATE ingest_batches SET outcome = 'dead_letter'
WHERE (gateway, seq) IN (SELECT * FROM unnest(%s::text[], %s::bigint[]))
"""

_INSERT_DEAD = """
INSERT INTO dead_letters (received_at, topic, gateway, site, seq, reason, detail, payload, once_key)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""

_SAVE_MARKS = """
INSERT INTO gateway_watermarks AS w (gateway, seq, updated_at)
SELECT g, s, now() FROM unnest(%b::text[], %b::bigint[]) AS t(g, s)
ON CONFLICT (gateway) DO UPDATE SET seq = GREATEST(w.seq, excluded.seq), updated_at = excluded.updated_at
"""

# The stored stream (what the mirror and the rollups follow): writer transactions after a
# checkpoint, whole, and only those older than every transaction still running, because the
# ids of concurrent writers become visible out of order. The checkpoint is a transaction id.
# Unsequenced batches (SenML: ingest_unsequenced, ids from the same sequence) are part of it.
_STREAM_XACTS = """
WITH s AS (
    SELECT xact, readings, id, outcome = 'stored' AS stored FROM ingest_batches
    WHERE xact > %(after)s::text::xid8 AND xact < pg_snapshot_xmin(pg_current_snapshot())
    UNION ALL
    SELECT xact, readings, id, true FROM ingest_unsequenced
    WHERE xact > %(after)s::text::xid8 AND xact < pg_snapshot_xmin(pg_current_snapshot())
)
SELECT xact::text::bigint, coalesce(sum(readings) FILTER (WHERE stored), 0),
       array_agg(id) FILTER (WHERE stored)
FROM s GROUP BY xact ORDER BY xact LIMIT %(limit)s
"""

# Ids for unsequenced batches, from the sequence of ingest_batches.id: one id space.
_UNSEQUENCED_IDS = """
SELECT nextval(pg_get_serial_sequence('ingest_batches', 'id')) FROM generate_series(1, %s)
"""

_INSERT_UNSEQUENCED = """
INSERT INTO ingest_unsequenced (id, gateway, site, received_at, readings) VALUES (%s, %s, %s, %s, %s)
"""

# The readings of some batches: the BRIN index on batch_id narrows to their block ranges.
_STREAM_ROWS = """
SELECT time, site, gateway, sensor, metric, value, quality FROM readings
WHERE batch_id BETWEEN %s AND %s AND batch_id = ANY(%s)
ORDER BY batch_id
"""

_CHECKPOINT = "SELECT checkpoint FROM stream_checkpoints WHERE name = %s"

_SAVE_CHECKPOINT = """
INSERT INTO stream_checkpoints (name, checkpoint) VALUES (%s, %s)
ON CONFLICT (name) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = now()
"""

_ROLLUPS = "rollups"  # the rollups' own position in stream_checkpoints

_UPSERT_SITE = """
INSERT INTO sites (id, name_vi, name_en, kind, parent, legacy_name, lat, lon)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name_vi = excluded.name_vi, name_en = excluded.name_en,
    kind = excluded.kind, parent = excluded.parent, legacy_name = excluded.legacy_name,
    lat = excluded.lat, lon = excluded.lon, active = true, updated_at = now()
"""

_UPSERT_GATEWAY = """
INSERT INTO gateways (id, site, name_vi, name_en, lat, lon) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET site = excluded.site, name_vi = excluded.name_vi,
    name_en = excluded.name_en, lat = excluded.lat, lon = excluded.lon, active = true, updated_at = now()
"""

_UPSERT_SENSOR = """
INSERT INTO sensors (id, gateway, site, kind, metrics, interval_s, name_vi, name_en, lat, lon, attrs)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET gateway = excluded.gateway, site = excluded.site, kind = excluded.kind,
    metrics = excluded.metrics, interval_s = excluded.interval_s, name_vi = excluded.name_vi,
    name_en = excluded.name_en, lat = excluded.lat, lon = excluded.lon, attrs = excluded.attrs,
    active = true, updated_at = now()
"""

_UPSERT_METRIC = """
INSERT INTO metrics (code, unit, name_vi, name_en, min, max, boolean) VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (code) DO UPDATE SET unit = excluded.unit, name_vi = excluded.name_vi,
    name_en = excluded.name_en, min = excluded.min, max = excluded.max, boolean = excluded.boolean
"""

# Rollups, incrementally: the readings of a page of the stored stream, aggregated per minute
# and per hour and merged into the stored aggregates (count and sum add up, min and max
# widen). Exact because a stored reading never changes (conflicts are dead letters, never
# overwrites) and each page is merged once: the checkpoint moves in the same transaction.
_MERGE = """
    ON CONFLICT (sensor, metric, bucket) DO UPDATE SET
        count = t.count + excluded.count, sum = t.sum + excluded.sum,
        min = LEAST(t.min, excluded.min), max = GREATEST(t.max, excluded.max),
        avg = (t.sum + excluded.sum) / (t.count + excluded.count), site = excluded.site
"""

# The page's readings are read and aggregated ONCE, per minute; the hours are built from those
# minute aggregates (count and sum add up, min and max of the minutes), so no reading is
# materialized twice. That halved the rollup's cost per reading (docs/performance.md).
_ROLLUP_PAGE = sql.SQL("""
WITH page AS (
    SELECT {minute} AS bucket, min(site) AS site, sensor, metric, min(value) AS min, max(value) AS max,
           count(*) AS count, sum(value) AS sum
    FROM readings
    WHERE batch_id BETWEEN %s AND %s AND batch_id = ANY(%s) AND quality IN ({qualities})
    GROUP BY 1, sensor, metric
), minutes AS (
    INSERT INTO readings_1m AS t (bucket, site, sensor, metric, avg, min, max, count, sum)
    SELECT bucket, site, sensor, metric, sum / count, min, max, count, sum FROM page
    {merge}
)
INSERT INTO readings_1h AS t (bucket, site, sensor, metric, avg, min, max, count, sum)
SELECT {hour}, min(site), sensor, metric, sum(sum) / sum(count)::bigint, min(min), max(max),
       sum(count)::bigint, sum(sum)
FROM page GROUP BY 1, sensor, metric
{merge}
""")


def _bucket(flavor: Flavor, unit: str, column: str) -> sql.Composable:
    """Start of the minute or hour of ``column``, aligned on the epoch like
    ``ingest.rollup.bucket_start``: ``time_bucket`` under TimescaleDB, ``date_bin`` elsewhere
    (plain arithmetic, where ``date_trunc`` on timestamptz converts through the session's
    time zone)."""
    width = sql.SQL("INTERVAL {}").format(sql.Literal(f"1 {unit}"))
    if flavor.startswith("timescaledb"):
        return sql.SQL("time_bucket({}, {})").format(width, sql.Identifier(column))
    return sql.SQL("date_bin({}, {}, TIMESTAMPTZ '1970-01-01 00:00:00+00')").format(
        width, sql.Identifier(column))


@functools.cache
def _rollup_sql(flavor: Flavor) -> bytes:
    return _ROLLUP_PAGE.format(
        minute=_bucket(flavor, "minute", "time"), hour=_bucket(flavor, "hour", "bucket"),
        qualities=sql.SQL(", ").join(sql.Literal(q) for q in ROLLUP_QUALITIES),
        merge=sql.SQL(_MERGE)).as_bytes(None)


# The BRIN indexes on readings.batch_id (one per chunk under TimescaleDB) of the chunks that
# may hold the batches of a stream page. Their block ranges written since autovacuum last
# came by are not summarized yet, and a bitmap scan must read every unsummarized range: a
# page of 50k readings read 200k rows on a freshly filled table, and the more so the faster
# the table grows. Summarizing the new ranges first reads each of them once.
_BATCH_BRINS = """
SELECT i.indexrelid::regclass::text FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
JOIN pg_attribute att ON att.attrelid = i.indrelid AND att.attnum = i.indkey[0]
WHERE a.amname = 'brin' AND att.attname = 'batch_id' AND i.indrelid = ANY(%s::regclass[])
"""


def _summarize_batch_ranges(conn: Connection, flavor: Flavor) -> None:
    """Under TimescaleDB only the chunks of the last two days, which take nearly all the
    writes; late readings in older chunks are few, and autovacuum summarizes those."""
    if flavor.startswith("timescaledb"):
        tables = [r[0] for r in conn.execute(
            "SELECT show_chunks('readings', newer_than => now() - INTERVAL '2 days')::text").fetchall()]
    else:
        tables = ["readings"]
    if not tables:
        return
    indexes = [r[0] for r in conn.execute(_BATCH_BRINS, (tables,)).fetchall()]
    # Summarizing waits for a VACUUM of the same table (both take SHARE UPDATE EXCLUSIVE):
    # then skip it, the page is read the slower way.
    conn.execute("SET LOCAL lock_timeout = '50ms'")
    for index in indexes:
        try:
            with conn.transaction():
                conn.execute("SELECT brin_summarize_new_values(%s::regclass)", (index,))
        except psycopg.errors.LockNotAvailable:
            logger.debug("%s is being vacuumed: not summarized now", index)
    conn.execute("SET LOCAL lock_timeout TO DEFAULT")


def _prefer_batch_index(conn: Connection) -> None:
    """For the rest of the transaction, read readings by batch through the BRIN index even
    when the table has no statistics yet (a fresh or fast-growing table): a scan of the block
    ranges that may hold the batches is never worse than reading the whole table. And sort
    or hash a page (tens of thousands of rows) in memory: with the default 4 MB the rollup's
    sort spilled to disk and took a fifth of its time."""
    conn.execute("SET LOCAL enable_seqscan = off")
    conn.execute("SET LOCAL work_mem = '64MB'")


def _rollback(conn: Connection) -> None:
    """End a failed transaction so the connection goes back to the pool clean (a broken one
    is discarded by the pool anyway)."""
    if not conn.broken and not conn.closed:
        with suppress(psycopg.Error):
            conn.rollback()


def _configure(conn: Connection) -> None:
    conn.execute(_SESSION_SETUP)
    conn.commit()


class PostgresStore:
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
            # statement that hangs (a locked table, RELIABILITY R7) ends as an error.
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
        """The pool's ``check=`` (RELIABILITY: without one a pool hands out dead connections
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

    def flavor(self) -> Flavor:
        """What ``migrate`` made of this database (read once, then cached)."""
        if self._flavor is None:
            with self._connection() as conn:
                row = None
                if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() != (None,):
                    row = conn.execute(
                        "SELECT flavor FROM schema_migrations ORDER BY version DESC LIMIT 1").fetchone()
            if row is None:
                raise StoreError("postgresql: schema not migrated (run `smartward db migrate`)")
            self._flavor = cast(Flavor, row[0])
        return self._flavor

    # --- migrations --------------------------------------------------------------------------

    def migrate(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, **self._kwargs) as conn:
                conn.execute("SET statement_timeout = 0")
                # Several workers may start at once: one migrates, the others wait and find
                # nothing left to do.
                conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
                try:
                    self._flavor = self._migrate(conn)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"postgresql: migrate: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"postgresql: migrate: {exc}") from exc

    def _migrate(self, conn: Connection) -> Flavor:
        conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                flavor     text NOT NULL,
                source     text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )""")
        rows = conn.execute("SELECT version, flavor FROM schema_migrations ORDER BY version").fetchall()
        flavor: Flavor = cast(Flavor, rows[-1][1]) if rows else self._detect_flavor(conn)
        applied = {version for version, _ in rows}
        for m in migrations_for(flavor):
            if m.version in applied:
                continue
            source = f"{m.version:04d}_{m.name}.{m.flavor}.sql"
            with conn.transaction():
                conn.execute(m.sql.encode())
                conn.execute("INSERT INTO schema_migrations (version, name, flavor, source) "
                             "VALUES (%s, %s, %s, %s)", (m.version, m.name, flavor, source))
            logger.info("applied migration %s", source)
        return flavor

    def _detect_flavor(self, conn: Connection) -> Flavor:
        if self._timescaledb is False:
            return "postgresql"
        installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        if installed is None:
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
            if available is None:
                if self._timescaledb:
                    raise StoreError("postgresql: TimescaleDB required but the server does not have it")
                logger.info("TimescaleDB not available: plain PostgreSQL tables")
                return "postgresql"
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            except psycopg.Error as exc:
                # Typically: not in shared_preload_libraries, or no privilege to create it.
                if self._timescaledb:
                    raise
                logger.warning("TimescaleDB available but CREATE EXTENSION failed (%s): plain PostgreSQL "
                               "tables", str(exc).strip())
                return "postgresql"
        row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
        license_ = row[0] if row else None
        logger.info("TimescaleDB present, license %r", license_)
        # 'apache': hypertables, time_bucket, drop_chunks. 'timescale': also continuous aggregates.
        return "timescaledb_tsl" if license_ == "timescale" else "timescaledb"

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
                cur.execute(_CLAIM, (
                    [c.gateway for c in claims], [c.seq for c in claims], [c.site for c in claims],
                    [c.received_at for c in claims], [c.readings for c in claims],
                    [c.outcome for c in claims], [c.digest for c in claims]))
            ids = {(g, s): i for g, s, i in cur.fetchall()}
            new_keys = set(ids)
            refused = [c.key for c in claims if c.key not in new_keys]
            if refused:
                cur.execute(_PREVIOUS, ([g for g, _ in refused], [s for _, s in refused]))
                previous = {(g, s): writeplan.Previous(o, bytes(d)) for g, s, o, d in cur.fetchall()}
        settled = writeplan.settle(plan, new_keys, previous)
        result = WriteResult(duplicate_batches=settled.duplicates, handled=settled.handled)

        conflicts: dict[int, DeadLetter] = {}
        if settled.store:
            # An unsequenced batch (SenML) has no ingest_batches row: it gets an id of the same
            # sequence and an ingest_unsequenced row, so it is in the stored stream all the same.
            n_loose = sum(not vb.sequenced for vb in settled.store)
            loose = iter([i for (i,) in cur.execute(_UNSEQUENCED_IDS, (n_loose,)).fetchall()]
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
                cur.executemany(_INSERT_UNSEQUENCED, unsequenced)
            if conflicts:
                cur.execute(_MARK_CONFLICTS, ([d.gateway for d in conflicts.values()],
                                              [d.seq for d in conflicts.values()]))
            if letters:
                cur.executemany(_INSERT_DEAD, [
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
        with cur.copy(_READINGS_COPY) as copy:
            copy.set_types(_READINGS_TYPES)
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
        with cur.copy(_STAGE_COPY) as copy:
            copy.set_types(_STAGE_TYPES)
            for i, (vb, batch_id) in enumerate(zip(batches, batch_ids, strict=True)):
                site, gateway = vb.site, vb.batch.gateway
                for r in vb.batch.readings:
                    copy.write_row((i, r.ts, site, gateway, r.sensor, r.metric, r.value, r.quality,
                                    batch_id))
        conflicts = writeplan.reading_conflicts(batches, self._differing(cur))
        if conflicts:
            cur.execute("DELETE FROM pg_temp.readings_stage WHERE b = ANY(%s)", (list(conflicts),))
        inserted = cur.execute(_INSERT_READINGS).rowcount
        if self._differing(cur):
            # Only a concurrent transaction that committed other values for these keys since
            # the check above can do this. Retrying the whole call sees them and files conflicts.
            raise StoreUnavailable("postgresql: a concurrent write stored conflicting readings; retry")
        return conflicts, inserted

    @staticmethod
    def _differing(cur: Cursor) -> dict[writeplan.ReadingKey, writeplan.ReadingValue]:
        cur.execute(_DIFFERING)
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
        cur.execute(_SAVE_MARKS, ([g for g, _ in ordered], [s for _, s in ordered]))

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

    # --- the stored stream: followed by the rollups and the InfluxDB mirror (MirrorSource) --

    @staticmethod
    def _stream_page(conn: Connection, checkpoint: int, limit: int) -> tuple[int, list[int], int]:
        """(new checkpoint, ids of the stored batches, their readings) of the writer
        transactions after ``checkpoint``, whole, until about ``limit`` readings."""
        taken: list[int] = []
        rows = 0
        page = conn.execute(_STREAM_XACTS, {"after": checkpoint, "limit": max(1, limit)}).fetchall()
        for xact, n, batch_ids in page:
            checkpoint = xact
            taken.extend(batch_ids or ())
            rows += n
            if rows >= limit:
                break
        return checkpoint, taken, rows

    def read_since(self, checkpoint: int, limit: int) -> MirrorPage:
        """Readings of the batches stored by writer transactions after ``checkpoint`` (a
        transaction id), whole transactions, until about ``limit`` rows."""
        from ingest.mirror import MirrorPage, MirrorRow

        with self._connection() as conn:
            checkpoint, taken, _ = self._stream_page(conn, checkpoint, limit)
            found = []
            if taken:
                _summarize_batch_ranges(conn, self.flavor())
                _prefer_batch_index(conn)
                found = conn.execute(_STREAM_ROWS, (min(taken), max(taken), taken)).fetchall()
        return MirrorPage([MirrorRow(*r) for r in found], checkpoint)

    def mirror_checkpoint(self, name: str) -> int:
        with self._connection() as conn:
            row = conn.execute(_CHECKPOINT, (name,)).fetchone()
        return int(row[0]) if row else 0

    def save_mirror_checkpoint(self, name: str, checkpoint: int) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute(_SAVE_CHECKPOINT, (name, checkpoint))

    # --- registry, rollups, retention ------------------------------------------------------

    def sync_registry(self, registry: Registry) -> None:
        rows = registry_rows(registry)
        with self._connection() as conn, conn.transaction():
            cur = conn.cursor()
            cur.executemany(_UPSERT_SITE, rows.sites)
            cur.executemany(_UPSERT_GATEWAY, rows.gateways)
            cur.executemany(_UPSERT_SENSOR, [(*sensor[:-1], Jsonb(sensor.attrs)) for sensor in rows.sensors])
            cur.executemany(_UPSERT_METRIC, rows.metrics)
            # Retired ids stay (readings point at them) but are no longer active.
            retire = {"sites": [x.id for x in rows.sites], "gateways": [x.id for x in rows.gateways],
                      "sensors": [x.id for x in rows.sensors]}
            for table, ids in retire.items():
                cur.execute(sql.SQL("UPDATE {} SET active = false, updated_at = now() "
                                    "WHERE active AND NOT (id = ANY(%s))").format(sql.Identifier(table)),
                            (ids,))

    def refresh_rollups(self, *, max_rows: int = DEFAULT_MAX_ROWS) -> int:
        flavor = self.flavor()
        if flavor == "timescaledb_tsl":
            return 0  # continuous aggregates: the server refreshes them
        with self._connection() as conn, conn.transaction():
            # One refresher at a time: each page must be merged exactly once.
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_ROLLUP_LOCK,)).fetchone()
            if row is None or not row[0]:
                return 0
            row = conn.execute(_CHECKPOINT, (_ROLLUPS,)).fetchone()
            checkpoint = int(row[0]) if row else 0
            new_checkpoint, taken, rows = self._stream_page(conn, checkpoint, max_rows)
            if new_checkpoint == checkpoint:
                return 0
            if taken:
                _summarize_batch_ranges(conn, flavor)
                _prefer_batch_index(conn)
                conn.execute(_rollup_sql(flavor), (min(taken), max(taken), taken))
            conn.execute(_SAVE_CHECKPOINT, (_ROLLUPS, new_checkpoint))
            return max(rows, 1)

    def apply_retention(self, *, readings_before: datetime | None, rollup_1m_before: datetime | None,
                        rollup_1h_before: datetime | None,
                        dead_letters_before: datetime | None) -> RetentionResult:
        flavor = self.flavor()
        counts: dict[str, int] = {}
        with self._connection() as conn, conn.transaction():
            if readings_before is not None:
                if flavor.startswith("timescaledb"):
                    row = conn.execute("SELECT count(*) FROM drop_chunks('readings', older_than => %s)",
                                       (readings_before,)).fetchone()
                    counts["readings_chunks"] = int(row[0]) if row else 0
                else:
                    counts["readings_rows"] = conn.execute("DELETE FROM readings WHERE time < %s",
                                                           (readings_before,)).rowcount
            for key, table, cutoff in (("rollup_1m_rows", "readings_1m", rollup_1m_before),
                                       ("rollup_1h_rows", "readings_1h", rollup_1h_before)):
                if cutoff is None:
                    continue
                if flavor == "timescaledb_tsl":
                    conn.execute("SELECT drop_chunks(%s, older_than => %s)", (table, cutoff))
                else:
                    counts[key] = conn.execute(
                        sql.SQL("DELETE FROM {} WHERE bucket < %s").format(sql.Identifier(table)),
                        (cutoff,)).rowcount
            if dead_letters_before is not None:
                counts["dead_letters_rows"] = conn.execute("DELETE FROM dead_letters WHERE received_at < %s",
                                                           (dead_letters_before,)).rowcount
        return RetentionResult(**counts)

    # --- queries -----------------------------------------------------------------------------

    def query_readings(self, sensor: str, metric: str, start: datetime, end: datetime) -> list[StoredReading]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT time, site, gateway, sensor, metric, value, quality FROM readings "
                "WHERE sensor = %s AND metric = %s AND time >= %s AND time < %s ORDER BY time",
                (sensor, metric, start, end)).fetchall()
        return [StoredReading(*r) for r in rows]

    def query_rollup(self, resolution: Resolution, sensor: str, metric: str, start: datetime,
                     end: datetime) -> list[RollupRow]:
        table = {"1m": "readings_1m", "1h": "readings_1h"}[resolution]
        with self._connection() as conn:
            rows = conn.execute(
                sql.SQL("SELECT bucket, site, sensor, metric, avg, min, max, count FROM {} "
                        "WHERE sensor = %s AND metric = %s AND bucket >= %s AND bucket < %s ORDER BY bucket"
                        ).format(sql.Identifier(table)),
                (sensor, metric, start, end)).fetchall()
        return [RollupRow(*r) for r in rows]

    def dead_letter_rows(self, *, limit: int = 100) -> list[StoredDeadLetter]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, received_at, topic, reason, detail, payload, gateway, site, seq "
                "FROM dead_letters ORDER BY id DESC LIMIT %s", (limit,)).fetchall()
        return [StoredDeadLetter(r[0], DeadLetter(r[1], r[2], r[3], r[4], bytes(r[5]), r[6], r[7], r[8]))
                for r in rows]

    def batch_outcomes(self, gateway: str) -> dict[int, str]:
        with self._connection() as conn:
            return {seq: outcome for seq, outcome in conn.execute(
                "SELECT seq, outcome FROM ingest_batches WHERE gateway = %s", (gateway,))}

    def seq_gaps(self, gateway: str | None = None) -> list[SeqGap]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT gateway, first_seq, last_seq, missing, lost FROM seq_gaps "
                "WHERE %(gw)s::text IS NULL OR gateway = %(gw)s ORDER BY gateway, first_seq",
                {"gw": gateway}).fetchall()
        return [SeqGap(*r) for r in rows]

    def completeness(self) -> list[Completeness]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT gateway, site, expected, stored, dead_lettered, lost, pending, "
                "completeness_pct::float8 FROM gateway_completeness ORDER BY gateway").fetchall()
        return [Completeness(*r) for r in rows]
