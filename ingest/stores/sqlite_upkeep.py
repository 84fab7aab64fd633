"""What ``SqliteStore`` does besides writing: the stored stream that the rollups and the InfluxDB
mirror follow, the registry, rollups, retention and the read queries."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from contract.registry import Registry
from ingest.ports import DeadLetter
from ingest.rollup import DEFAULT_MAX_ROWS
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
from ingest.stores.sqlite_sql import (
    ROLLUPS,
    STREAM,
    UPSERT_GATEWAY,
    UPSERT_METRIC,
    UPSERT_SENSOR,
    UPSERT_SITE,
    parse_sqlite_time,
    sqlite_time,
    translate,
)

if TYPE_CHECKING:
    from ingest.mirror import MirrorPage


class SqliteUpkeep:
    """The stream, rollups, retention, registry and queries of ``SqliteStore``, which supplies
    the one connection, its lock and transactions."""

    _lock: threading.RLock
    _conn: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    @staticmethod
    def _stream_page(c: sqlite3.Connection, checkpoint: int, limit: int) -> tuple[int, int]:
        """(new checkpoint, readings) of the batches after ``checkpoint`` (an id of
        ``ingest_batches`` or ``ingest_unsequenced``: with one writer at a time, ids commit in
        order), whole
        batches, until about ``limit`` readings."""
        rows = 0
        for batch_id, n in c.execute(STREAM, (checkpoint, checkpoint, max(1, limit))).fetchall():
            checkpoint, rows = batch_id, rows + n
            if rows >= limit:
                break
        return checkpoint, rows

    def read_since(self, checkpoint: int, limit: int) -> MirrorPage:
        from ingest.mirror import MirrorPage, MirrorRow

        with self._lock:
            try:
                last, _ = self._stream_page(self._conn, checkpoint, limit)
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            found = self._read(
                "SELECT time, site, gateway, sensor, metric, value, quality FROM readings "
                "WHERE batch_id > ? AND batch_id <= ? ORDER BY batch_id", (checkpoint, last))
        return MirrorPage([MirrorRow(parse_sqlite_time(r[0]), *r[1:]) for r in found], last)

    def mirror_checkpoint(self, name: str) -> int:
        row = self._read("SELECT checkpoint FROM stream_checkpoints WHERE name = ?", (name,))
        return int(row[0][0]) if row else 0

    def save_mirror_checkpoint(self, name: str, checkpoint: int) -> None:
        with self._transaction() as c:
            self._save_checkpoint(c, name, checkpoint)

    @staticmethod
    def _save_checkpoint(c: sqlite3.Connection, name: str, checkpoint: int) -> None:
        c.execute("INSERT INTO stream_checkpoints (name, checkpoint, updated_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET checkpoint = excluded.checkpoint, "
                  "updated_at = excluded.updated_at", (name, checkpoint, sqlite_time(datetime.now(UTC))))

    # --- registry, rollups, retention ------------------------------------------------------

    def sync_registry(self, registry: Registry) -> None:
        rows = registry_rows(registry)
        now = sqlite_time(datetime.now(UTC))
        with self._transaction() as c:
            c.executemany(UPSERT_SITE, [(*site, now) for site in rows.sites])
            c.executemany(UPSERT_GATEWAY, [(*gw, now) for gw in rows.gateways])
            c.executemany(UPSERT_SENSOR, [
                (*sensor[:4], json.dumps(sensor.metrics), *sensor[5:10],
                 json.dumps(sensor.attrs, ensure_ascii=False, sort_keys=True), now)
                for sensor in rows.sensors])
            c.executemany(UPSERT_METRIC, rows.metrics)
            # Retired ids stay (readings point at them) but are no longer active.
            retire = {"sites": [x.id for x in rows.sites], "gateways": [x.id for x in rows.gateways],
                      "sensors": [x.id for x in rows.sensors]}
            for table, ids in retire.items():
                c.execute(f"UPDATE {table} SET active = 0, updated_at = ? "
                          "WHERE active = 1 AND id NOT IN (SELECT value FROM json_each(?))",
                          (now, json.dumps(ids)))

    def refresh_rollups(self, *, max_rows: int = DEFAULT_MAX_ROWS) -> int:
        with self._transaction() as c:
            row = c.execute("SELECT checkpoint FROM stream_checkpoints WHERE name = 'rollups'").fetchone()
            checkpoint = int(row[0]) if row else 0
            last, rows = self._stream_page(c, checkpoint, max_rows)
            if last == checkpoint:
                return 0
            for statement in ROLLUPS:
                c.execute(statement, (checkpoint, last))
            self._save_checkpoint(c, "rollups", last)
            return max(rows, 1)

    def apply_retention(self, *, readings_before: datetime | None, rollup_1m_before: datetime | None,
                        rollup_1h_before: datetime | None,
                        dead_letters_before: datetime | None) -> RetentionResult:
        counts: dict[str, int] = {}
        with self._transaction() as c:
            for name, query, cutoff in (
                ("readings_rows", "DELETE FROM readings WHERE time < ?", readings_before),
                ("rollup_1m_rows", "DELETE FROM readings_1m WHERE bucket < ?", rollup_1m_before),
                ("rollup_1h_rows", "DELETE FROM readings_1h WHERE bucket < ?", rollup_1h_before),
                ("dead_letters_rows", "DELETE FROM dead_letters WHERE received_at < ?", dead_letters_before),
            ):
                if cutoff is not None:
                    counts[name] = c.execute(query, (sqlite_time(cutoff),)).rowcount
        return RetentionResult(**counts)

    # --- queries -----------------------------------------------------------------------------

    def query_readings(self, sensor: str, metric: str, start: datetime, end: datetime) -> list[StoredReading]:
        rows = self._read(
            "SELECT time, site, gateway, sensor, metric, value, quality FROM readings "
            "WHERE sensor = ? AND metric = ? AND time >= ? AND time < ? ORDER BY time",
            (sensor, metric, sqlite_time(start), sqlite_time(end)))
        return [StoredReading(parse_sqlite_time(r[0]), *r[1:]) for r in rows]

    def query_rollup(self, resolution: Resolution, sensor: str, metric: str, start: datetime,
                     end: datetime) -> list[RollupRow]:
        table = {"1m": "readings_1m", "1h": "readings_1h"}[resolution]
        rows = self._read(
            f"SELECT bucket, site, sensor, metric, avg, min, max, count FROM {table} "
            "WHERE sensor = ? AND metric = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
            (sensor, metric, sqlite_time(start), sqlite_time(end)))
        return [RollupRow(parse_sqlite_time(r[0]), *r[1:]) for r in rows]

    def dead_letter_rows(self, *, limit: int = 100) -> list[StoredDeadLetter]:
        rows = self._read(
            "SELECT id, received_at, topic, reason, detail, payload, gateway, site, seq FROM dead_letters "
            "ORDER BY id DESC LIMIT ?", (limit,))
        return [StoredDeadLetter(r[0], DeadLetter(parse_sqlite_time(r[1]), r[2], r[3], r[4], bytes(r[5]),
                                                  r[6], r[7], r[8])) for r in rows]

    def batch_outcomes(self, gateway: str) -> dict[int, str]:
        return {seq: outcome for seq, outcome in self._read(
            "SELECT seq, outcome FROM ingest_batches WHERE gateway = ?", (gateway,))}

    def seq_gaps(self, gateway: str | None = None) -> list[SeqGap]:
        rows = self._read(
            "SELECT gateway, first_seq, last_seq, missing, lost FROM seq_gaps "
            "WHERE ? IS NULL OR gateway = ? ORDER BY gateway, first_seq", (gateway, gateway))
        return [SeqGap(*r) for r in rows]

    def completeness(self) -> list[Completeness]:
        rows = self._read(
            "SELECT gateway, site, expected, stored, dead_lettered, lost, pending, completeness_pct "
            "FROM gateway_completeness ORDER BY gateway")
        return [Completeness(*r) for r in rows]
