"""``SqliteStore``: the embedded store (``sqlite:///./smartward.db``), for ``smartward demo``
and a single small ward. Same tables and column names as the PostgreSQL store.

Times are RFC 3339 UTC text of fixed width, always with microseconds and ``Z``
(``2026-11-28T04:59:58.000000Z``, see ``sqlite_time``). That text sorts as time does, so a
range predicate ``time >= ? AND time < ?`` with bounds formatted the same way walks the
primary key ``(sensor, metric, time)``; Grafana's SQLite data source and people read it as a
time; and the minute or hour of a reading is a prefix of it, which the rollups use.

Durability: WAL with ``synchronous=FULL`` by default, because the ack watermark tells the
edge it may delete a batch once ``write`` returns: a commit must survive a power cut.

One connection, shared by the ingest's writer and the rollup thread under a lock: SQLite
has one writer at a time anyway. The statements and the time format are in ``sqlite_sql.py``;
the stream, rollups, retention, registry and queries in ``sqlite_upkeep.py``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ingest.errors import StoreError, StoreUnavailable
from ingest.migrations import migrations_for
from ingest.ports import DeadLetter, ValidBatch, WriteResult
from ingest.stores import writeplan
from ingest.stores.sqlite_sql import (
    INSERT_BATCH,
    INSERT_DEAD,
    INSERT_READING,
    INSERT_UNSEQUENCED,
    LAST_STREAM_ID,
    SAVE_MARKS,
    StagedRow,
    parse_sqlite_time,
    path_from_url,
    sqlite_time,
    translate,
)
from ingest.stores.sqlite_upkeep import SqliteUpkeep

# Imported from here by the store factory and the tests.
__all__ = ["SqliteStore", "parse_sqlite_time", "path_from_url", "sqlite_time"]

if TYPE_CHECKING:
    pass


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration file, one at a time (``executescript`` would commit)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf
            buf = ""
    rest = "".join(ln for ln in buf.splitlines() if not ln.strip().startswith("--")).strip()
    if rest:
        raise StoreError(f"incomplete statement at the end of a migration: {rest[:80]!r}")


class SqliteStore(SqliteUpkeep):
    def __init__(self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL",
                 busy_timeout_ms: int = 5000) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                         timeout=busy_timeout_ms / 1000)
            self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    # --- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            except (OverflowError, ValueError) as exc:
                # sqlite3 refuses a value before SQLite sees it (an int beyond 64 bits, a
                # surrogate in text): a permanent refusal of this write, not a crash.
                raise StoreError(f"sqlite: {exc}") from exc

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(query, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc) from exc

    # --- Store protocol --------------------------------------------------------------------

    def migrate(self) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, flavor TEXT NOT NULL, applied_at TEXT NOT NULL)")
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            for m in migrations_for("sqlite"):
                with self._transaction() as c:
                    # Checked inside the write lock: another process may have just applied it.
                    done = c.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,))
                    if done.fetchone():
                        continue
                    for statement in _statements(m.sql):
                        c.execute(statement)
                    c.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                              (m.version, m.name, "sqlite", sqlite_time(datetime.now(UTC))))

    def write(self, batches: Sequence[ValidBatch], dead: Sequence[DeadLetter], *,
              watermarks: Mapping[str, int] | None = None) -> WriteResult:
        plan = writeplan.plan_write(batches, dead)
        if plan.empty and not watermarks:
            return WriteResult()
        with self._transaction() as c:
            return self._write(c, plan, watermarks)

    def _write(self, c: sqlite3.Connection, plan: writeplan.Plan,
               watermarks: Mapping[str, int] | None) -> WriteResult:
        previous: dict[writeplan.BatchKey, writeplan.Previous] = {}
        for claim in plan.claims:
            row = c.execute("SELECT outcome, digest FROM ingest_batches WHERE gateway = ? AND seq = ?",
                            claim.key).fetchone()
            if row is not None:
                previous[claim.key] = writeplan.Previous(row[0], row[1])
        ids: dict[writeplan.BatchKey, int] = {}
        for cl in plan.claims:
            if cl.key not in previous:
                cur = c.execute(INSERT_BATCH, (cl.gateway, cl.seq, cl.site, sqlite_time(cl.received_at),
                                                cl.readings, cl.outcome, cl.digest))
                ids[cl.key] = int(cur.lastrowid or 0)
        settled = writeplan.settle(plan, set(ids), previous)
        result = WriteResult(duplicate_batches=settled.duplicates, handled=settled.handled)

        times: dict[datetime, str] = {}
        per_batch: list[list[StagedRow]] = []
        # An unsequenced batch (SenML) gets an id of its own in the stream, from the same id
        # space: its readings then reach the rollups and the mirror like any other.
        loose = self._unsequenced_ids(c, sum(not vb.sequenced for vb in settled.store))
        batch_ids: list[int] = []
        for vb in settled.store:
            site, gateway = vb.site, vb.batch.gateway
            batch_id = ids[(gateway, vb.batch.seq)] if vb.sequenced else next(loose)
            batch_ids.append(batch_id)
            rows: list[StagedRow] = []
            for r in vb.batch.readings:
                t = times.get(r.ts)
                if t is None:
                    t = times[r.ts] = sqlite_time(r.ts)
                rows.append((t, site, gateway, r.sensor, r.metric, r.value, r.quality, batch_id))
            per_batch.append(rows)
        staged = [row for rows in per_batch for row in rows]
        conflicts: dict[int, DeadLetter] = {}
        c.execute("SAVEPOINT readings")
        inserted = c.executemany(INSERT_READING, staged).rowcount
        if inserted != len(staged):
            # Some keys exist already: undo, find the batches that conflict, store the rest.
            c.execute("ROLLBACK TO readings")
            conflicts = writeplan.reading_conflicts(settled.store, self._differing(c, staged))
            staged = [row for i, rows in enumerate(per_batch) if i not in conflicts for row in rows]
            inserted = c.executemany(INSERT_READING, staged).rowcount
        c.execute("RELEASE readings")
        result.stored_readings = inserted
        result.stored_batches = len(settled.store) - len(conflicts)
        c.executemany("UPDATE ingest_batches SET outcome = 'dead_letter' WHERE gateway = ? AND seq = ?",
                      [(d.gateway, d.seq) for d in conflicts.values() if d.seq is not None])
        c.executemany(INSERT_UNSEQUENCED, [
            (batch_id, vb.batch.gateway, vb.site, sqlite_time(vb.received_at), len(vb.batch.readings))
            for i, (vb, batch_id) in enumerate(zip(settled.store, batch_ids, strict=True))
            if not vb.sequenced and i not in conflicts])

        letters = [*settled.letters, *conflicts.values()]
        c.executemany(
            INSERT_DEAD,
            [(sqlite_time(d.received_at), d.topic, d.gateway, d.site, d.seq, d.reason, d.detail, d.payload,
              d.once_key)
             for d in letters])
        result.dead_letters = letters
        if watermarks:
            self._save_marks(c, watermarks)
        return result

    @staticmethod
    def _differing(c: sqlite3.Connection, staged: Sequence[StagedRow],
                   ) -> dict[writeplan.ReadingKey, writeplan.ReadingValue]:
        """Stored rows that differ from a staged one (see writeplan.reading_conflicts)."""
        out: dict[writeplan.ReadingKey, writeplan.ReadingValue] = {}
        query = "SELECT value, quality FROM readings WHERE sensor = ? AND metric = ? AND time = ?"
        for t, _site, _gw, sensor, metric, value, quality, _batch in staged:
            row = c.execute(query, (sensor, metric, t)).fetchone()
            if row is not None and (row[0], row[1]) != (value, quality):
                out[(sensor, metric, parse_sqlite_time(t))] = (row[0], row[1])
        return out

    def watermarks(self) -> dict[str, int]:
        return {gw: seq for gw, seq in self._read("SELECT gateway, seq FROM gateway_watermarks")}

    def save_watermarks(self, marks: dict[str, int]) -> None:
        with self._transaction() as c:
            self._save_marks(c, marks)

    @staticmethod
    def _save_marks(c: sqlite3.Connection, marks: Mapping[str, int]) -> None:
        now = sqlite_time(datetime.now(UTC))
        c.executemany(SAVE_MARKS, [(gw, seq, now) for gw, seq in sorted(marks.items())])

    def record_dropped(self, gateway: str, through_seq: int, at: datetime) -> None:
        with self._transaction() as c:
            c.execute("INSERT INTO gateway_drops (gateway, through_seq, declared_at) VALUES (?, ?, ?) "
                      "ON CONFLICT DO NOTHING", (gateway, through_seq, sqlite_time(at)))

    def handled_seqs(self, gateway: str, after: int, limit: int) -> list[int]:
        with self._lock:
            seqs = {s for (s,) in self._read(
                "SELECT seq FROM ingest_batches WHERE gateway = ? AND seq > ? ORDER BY seq LIMIT ?",
                (gateway, after, limit))}
            (through,) = self._read(
                "SELECT coalesce(max(through_seq), 0) FROM gateway_drops WHERE gateway = ?", (gateway,))[0]
        seqs.update(range(after + 1, min(through, after + limit) + 1))
        return sorted(seqs)[:limit]

    def ping(self) -> bool:
        try:
            self._read("SELECT 1")
        except (StoreError, StoreUnavailable):
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the stored stream (the rest in sqlite_upkeep.py) --------------------------------

    @staticmethod
    def _unsequenced_ids(c: sqlite3.Connection, n: int) -> Iterator[int]:
        """``n`` fresh ids of the stream for unsequenced batches, inside the write transaction:
        the next ones of ingest_batches' AUTOINCREMENT counter (``sqlite_sequence``), which is
        moved past them so that neither table ever reuses an id. Ids of a batch that turns out
        to be a conflict are simply never used."""
        if n == 0:
            return iter(())
        row = c.execute(LAST_STREAM_ID).fetchone()
        first = int(row[0]) + 1
        last = first + n - 1
        moved = c.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'ingest_batches'", (last,))
        if moved.rowcount == 0:
            c.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('ingest_batches', ?)", (last,))
        return iter(range(first, last + 1))
