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
has one writer at a time anyway.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from contract.registry import Registry
from ingest.errors import StoreError, StoreUnavailable
from ingest.migrations import migrations_for
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

# SQLite result codes that mean "try again later" rather than "this will never work".
_TRANSIENT = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
}

# time, site, gateway, sensor, metric, value, quality, batch_id
_Row = tuple[str, str, str, str, str, float, str, int | None]

_QUALITIES_SQL = ", ".join(f"'{q}'" for q in ROLLUP_QUALITIES)

_INSERT_BATCH = """
INSERT INTO ingest_batches (gateway, seq, site, received_at, readings, outcome, digest)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""

_INSERT_UNSEQUENCED = """
INSERT INTO ingest_unsequenced (id, gateway, site, received_at, readings) VALUES (?, ?, ?, ?, ?)
"""

# The last id of the stream: ingest_batches' AUTOINCREMENT counter (never below its ids), or an
# id of ingest_unsequenced if higher (only if the counter was reset by hand).
_LAST_STREAM_ID = """
SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'ingest_batches'), 0),
           coalesce((SELECT max(id) FROM ingest_unsequenced), 0))
"""

# The stored stream: every batch after a checkpoint, sequenced or not, in id order (one id
# space: see ``SqliteStore._unsequenced_ids``); a batch not stored counts no readings.
_STREAM = """
SELECT id, n FROM (
    SELECT id, CASE outcome WHEN 'stored' THEN readings ELSE 0 END AS n FROM ingest_batches WHERE id > ?
    UNION ALL
    SELECT id, readings FROM ingest_unsequenced WHERE id > ?
) ORDER BY id LIMIT ?
"""

_INSERT_READING = """
INSERT INTO readings (time, site, gateway, sensor, metric, value, quality, batch_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

_INSERT_DEAD = """
INSERT INTO dead_letters (received_at, topic, gateway, site, seq, reason, detail, payload, once_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

_SAVE_MARKS = """
INSERT INTO gateway_watermarks (gateway, seq, updated_at) VALUES (?, ?, ?)
ON CONFLICT (gateway) DO UPDATE SET seq = max(seq, excluded.seq), updated_at = excluded.updated_at
"""

_UPSERT_SITE = """
INSERT INTO sites (id, name_vi, name_en, kind, parent, legacy_name, lat, lon, active, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (id) DO UPDATE SET name_vi = excluded.name_vi, name_en = excluded.name_en,
    kind = excluded.kind, parent = excluded.parent, legacy_name = excluded.legacy_name,
    lat = excluded.lat, lon = excluded.lon, active = 1, updated_at = excluded.updated_at
"""

_UPSERT_GATEWAY = """
INSERT INTO gateways (id, site, name_vi, name_en, lat, lon, active, updated_at)
VALUES (?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (id) DO UPDATE SET site = excluded.site, name_vi = excluded.name_vi,
    name_en = excluded.name_en, lat = excluded.lat, lon = excluded.lon, active = 1,
    updated_at = excluded.updated_at
"""

_UPSERT_SENSOR = """
INSERT INTO sensors (id, gateway, site, kind, metrics, interval_s, name_vi, name_en, lat, lon, attrs,
                     active, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (id) DO UPDATE SET gateway = excluded.gateway, site = excluded.site, kind = excluded.kind,
    metrics = excluded.metrics, interval_s = excluded.interval_s, name_vi = excluded.name_vi,
    name_en = excluded.name_en, lat = excluded.lat, lon = excluded.lon, attrs = excluded.attrs,
    active = 1, updated_at = excluded.updated_at
"""

_UPSERT_METRIC = """
INSERT INTO metrics (code, unit, name_vi, name_en, min, max, boolean) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (code) DO UPDATE SET unit = excluded.unit, name_vi = excluded.name_vi,
    name_en = excluded.name_en, min = excluded.min, max = excluded.max, boolean = excluded.boolean
"""

# Rollups, incrementally (see ingest/stores/postgres.py): the readings of the batches after the
# checkpoint, aggregated per minute or hour (a prefix of the time text) and merged.
_MERGE_ROLLUP = """
INSERT INTO {table} AS t (bucket, site, sensor, metric, avg, min, max, count, sum)
SELECT substr(time, 1, {prefix}) || '{suffix}', min(site), sensor, metric, avg(value), min(value), max(value),
    count(*), sum(value)
FROM readings
WHERE batch_id > ? AND batch_id <= ? AND quality IN ({qualities})
GROUP BY 1, sensor, metric
ON CONFLICT (sensor, metric, bucket) DO UPDATE SET
    count = t.count + excluded.count, sum = t.sum + excluded.sum,
    min = min(t.min, excluded.min), max = max(t.max, excluded.max),
    avg = (t.sum + excluded.sum) / (t.count + excluded.count), site = excluded.site
"""
_ROLLUPS = tuple(_MERGE_ROLLUP.format(table=table, prefix=prefix, suffix=suffix, qualities=_QUALITIES_SQL)
                 for table, prefix, suffix in (("readings_1m", 17, "00.000000Z"),
                                               ("readings_1h", 14, "00:00.000000Z")))


def sqlite_time(t: datetime) -> str:
    """The stored form of an aware datetime: ``2026-11-28T04:59:58.000000Z``."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: store times must be aware")
    return t.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_sqlite_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db`` -> ``relative.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"not a sqlite URL (sqlite:///path): {url!r}")
    return url[len(prefix):]


def _translate(exc: sqlite3.Error) -> StoreUnavailable | StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _TRANSIENT:
        return StoreUnavailable(f"sqlite: {exc}")
    return StoreError(f"sqlite: {exc}")


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


class SqliteStore:
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
            raise _translate(exc) from exc

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
                raise _translate(exc) from exc
            except (OverflowError, ValueError) as exc:
                # sqlite3 refuses a value before SQLite sees it (an int beyond 64 bits, a
                # surrogate in text): a permanent refusal of this write, not a crash.
                raise StoreError(f"sqlite: {exc}") from exc

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(query, params).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    # --- Store protocol --------------------------------------------------------------------

    def migrate(self) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, flavor TEXT NOT NULL, applied_at TEXT NOT NULL)")
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
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
                cur = c.execute(_INSERT_BATCH, (cl.gateway, cl.seq, cl.site, sqlite_time(cl.received_at),
                                                cl.readings, cl.outcome, cl.digest))
                ids[cl.key] = int(cur.lastrowid or 0)
        settled = writeplan.settle(plan, set(ids), previous)
        result = WriteResult(duplicate_batches=settled.duplicates, handled=settled.handled)

        times: dict[datetime, str] = {}
        per_batch: list[list[_Row]] = []
        # An unsequenced batch (SenML) gets an id of its own in the stream, from the same id
        # space: its readings then reach the rollups and the mirror like any other.
        loose = self._unsequenced_ids(c, sum(not vb.sequenced for vb in settled.store))
        batch_ids: list[int] = []
        for vb in settled.store:
            site, gateway = vb.site, vb.batch.gateway
            batch_id = ids[(gateway, vb.batch.seq)] if vb.sequenced else next(loose)
            batch_ids.append(batch_id)
            rows: list[_Row] = []
            for r in vb.batch.readings:
                t = times.get(r.ts)
                if t is None:
                    t = times[r.ts] = sqlite_time(r.ts)
                rows.append((t, site, gateway, r.sensor, r.metric, r.value, r.quality, batch_id))
            per_batch.append(rows)
        staged = [row for rows in per_batch for row in rows]
        conflicts: dict[int, DeadLetter] = {}
        c.execute("SAVEPOINT readings")
        inserted = c.executemany(_INSERT_READING, staged).rowcount
        if inserted != len(staged):
            # Some keys exist already: undo, find the batches that conflict, store the rest.
            c.execute("ROLLBACK TO readings")
            conflicts = writeplan.reading_conflicts(settled.store, self._differing(c, staged))
            staged = [row for i, rows in enumerate(per_batch) if i not in conflicts for row in rows]
            inserted = c.executemany(_INSERT_READING, staged).rowcount
        c.execute("RELEASE readings")
        result.stored_readings = inserted
        result.stored_batches = len(settled.store) - len(conflicts)
        c.executemany("UPDATE ingest_batches SET outcome = 'dead_letter' WHERE gateway = ? AND seq = ?",
                      [(d.gateway, d.seq) for d in conflicts.values() if d.seq is not None])
        c.executemany(_INSERT_UNSEQUENCED, [
            (batch_id, vb.batch.gateway, vb.site, sqlite_time(vb.received_at), len(vb.batch.readings))
            for i, (vb, batch_id) in enumerate(zip(settled.store, batch_ids, strict=True))
            if not vb.sequenced and i not in conflicts])

        letters = [*settled.letters, *conflicts.values()]
        c.executemany(
            _INSERT_DEAD,
            [(sqlite_time(d.received_at), d.topic, d.gateway, d.site, d.seq, d.reason, d.detail, d.payload,
              d.once_key)
             for d in letters])
        result.dead_letters = letters
        if watermarks:
            self._save_marks(c, watermarks)
        return result

    @staticmethod
    def _differing(c: sqlite3.Connection, staged: Sequence[_Row],
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
        c.executemany(_SAVE_MARKS, [(gw, seq, now) for gw, seq in sorted(marks.items())])

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

    # --- the stored stream: followed by the rollups and the InfluxDB mirror (MirrorSource) --

    @staticmethod
    def _unsequenced_ids(c: sqlite3.Connection, n: int) -> Iterator[int]:
        """``n`` fresh ids of the stream for unsequenced batches, inside the write transaction:
        the next ones of ingest_batches' AUTOINCREMENT counter (``sqlite_sequence``), which is
        moved past them so that neither table ever reuses an id. Ids of a batch that turns out
        to be a conflict are simply never used."""
        if n == 0:
            return iter(())
        row = c.execute(_LAST_STREAM_ID).fetchone()
        first = int(row[0]) + 1
        last = first + n - 1
        moved = c.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'ingest_batches'", (last,))
        if moved.rowcount == 0:
            c.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('ingest_batches', ?)", (last,))
        return iter(range(first, last + 1))

    @staticmethod
    def _stream_page(c: sqlite3.Connection, checkpoint: int, limit: int) -> tuple[int, int]:
        """(new checkpoint, readings) of the batches after ``checkpoint`` (an id of
        ``ingest_batches`` or ``ingest_unsequenced``: with one writer at a time, ids commit in
        order), whole
        batches, until about ``limit`` readings."""
        rows = 0
        for batch_id, n in c.execute(_STREAM, (checkpoint, checkpoint, max(1, limit))).fetchall():
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
                raise _translate(exc) from exc
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
            c.executemany(_UPSERT_SITE, [(*site, now) for site in rows.sites])
            c.executemany(_UPSERT_GATEWAY, [(*gw, now) for gw in rows.gateways])
            c.executemany(_UPSERT_SENSOR, [
                (*sensor[:4], json.dumps(sensor.metrics), *sensor[5:10],
                 json.dumps(sensor.attrs, ensure_ascii=False, sort_keys=True), now)
                for sensor in rows.sensors])
            c.executemany(_UPSERT_METRIC, rows.metrics)
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
            for statement in _ROLLUPS:
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
