"""What ``PostgresStore`` does besides writing: the stored stream that the rollups and the
InfluxDB mirror follow, the registry, rollups, retention and the read queries
(docs/performance.md for the BRIN and rollup choices)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from contract.registry import Registry
from ingest.migrations import Flavor
from ingest.ports import DeadLetter
from ingest.rollup import DEFAULT_MAX_ROWS
from ingest.stores.postgres_sql import (
    BATCH_BRINS,
    CHECKPOINT,
    ROLLUP_LOCK,
    ROLLUPS,
    SAVE_CHECKPOINT,
    STREAM_ROWS,
    STREAM_XACTS,
    UPSERT_GATEWAY,
    UPSERT_METRIC,
    UPSERT_SENSOR,
    UPSERT_SITE,
    rollup_sql,
)
from ingest.stores.records import (
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
    indexes = [r[0] for r in conn.execute(BATCH_BRINS, (tables,)).fetchall()]
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


class PostgresUpkeep:
    """The stream, rollups, retention, registry and queries of ``PostgresStore``, which
    supplies the pooled connections and the flavor."""

    def _connection(self, timeout: float | None = None) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def flavor(self) -> Flavor:
        raise NotImplementedError

    # --- the stored stream: followed by the rollups and the InfluxDB mirror (MirrorSource) --

    @staticmethod
    def _stream_page(conn: Connection, checkpoint: int, limit: int) -> tuple[int, list[int], int]:
        """(new checkpoint, ids of the stored batches, their readings) of the writer
        transactions after ``checkpoint``, whole, until about ``limit`` readings."""
        taken: list[int] = []
        rows = 0
        page = conn.execute(STREAM_XACTS, {"after": checkpoint, "limit": max(1, limit)}).fetchall()
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
                found = conn.execute(STREAM_ROWS, (min(taken), max(taken), taken)).fetchall()
        return MirrorPage([MirrorRow(*r) for r in found], checkpoint)

    def mirror_checkpoint(self, name: str) -> int:
        with self._connection() as conn:
            row = conn.execute(CHECKPOINT, (name,)).fetchone()
        return int(row[0]) if row else 0

    def save_mirror_checkpoint(self, name: str, checkpoint: int) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute(SAVE_CHECKPOINT, (name, checkpoint))

    # --- registry, rollups, retention ------------------------------------------------------

    def sync_registry(self, registry: Registry) -> None:
        rows = registry_rows(registry)
        with self._connection() as conn, conn.transaction():
            cur = conn.cursor()
            cur.executemany(UPSERT_SITE, rows.sites)
            cur.executemany(UPSERT_GATEWAY, rows.gateways)
            cur.executemany(UPSERT_SENSOR, [(*sensor[:-1], Jsonb(sensor.attrs)) for sensor in rows.sensors])
            cur.executemany(UPSERT_METRIC, rows.metrics)
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
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ROLLUP_LOCK,)).fetchone()
            if row is None or not row[0]:
                return 0
            row = conn.execute(CHECKPOINT, (ROLLUPS,)).fetchone()
            checkpoint = int(row[0]) if row else 0
            new_checkpoint, taken, rows = self._stream_page(conn, checkpoint, max_rows)
            if new_checkpoint == checkpoint:
                return 0
            if taken:
                _summarize_batch_ranges(conn, flavor)
                _prefer_batch_index(conn)
                conn.execute(rollup_sql(flavor), (min(taken), max(taken), taken))
            conn.execute(SAVE_CHECKPOINT, (ROLLUPS, new_checkpoint))
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
