"""The text forms of ``SqliteStore`` (ingest/stores/sqlite.py): its statements, the stored form
of times (``sqlite_time``), URLs, and which SQLite errors are worth a retry. No connection."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from ingest.errors import StoreError, StoreUnavailable
from ingest.stores.records import ROLLUP_QUALITIES

# SQLite result codes that mean "try again later" rather than "this will never work".
TRANSIENT = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
}

# time, site, gateway, sensor, metric, value, quality, batch_id
StagedRow = tuple[str, str, str, str, str, float, str, int | None]

QUALITIES_SQL = ", ".join(f"'{q}'" for q in ROLLUP_QUALITIES)

INSERT_BATCH = """
INSERT INTO ingest_batches (gateway, seq, site, received_at, readings, outcome, digest)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""

INSERT_UNSEQUENCED = """
INSERT INTO ingest_unsequenced (id, gateway, site, received_at, readings) VALUES (?, ?, ?, ?, ?)
"""

# The last id of the stream: ingest_batches' AUTOINCREMENT counter (never below its ids), or an
# id of ingest_unsequenced if higher (only if the counter was reset by hand).
LAST_STREAM_ID = """
SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'ingest_batches'), 0),
           coalesce((SELECT max(id) FROM ingest_unsequenced), 0))
"""

# The stored stream: every batch after a checkpoint, sequenced or not, in id order (one id
# space: see ``SqliteStore._unsequenced_ids``); a batch not stored counts no readings.
STREAM = """
SELECT id, n FROM (
    SELECT id, CASE outcome WHEN 'stored' THEN readings ELSE 0 END AS n FROM ingest_batches WHERE id > ?
    UNION ALL
    SELECT id, readings FROM ingest_unsequenced WHERE id > ?
) ORDER BY id LIMIT ?
"""

INSERT_READING = """
INSERT INTO readings (time, site, gateway, sensor, metric, value, quality, batch_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

INSERT_DEAD = """
INSERT INTO dead_letters (received_at, topic, gateway, site, seq, reason, detail, payload, once_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

SAVE_MARKS = """
INSERT INTO gateway_watermarks (gateway, seq, updated_at) VALUES (?, ?, ?)
ON CONFLICT (gateway) DO UPDATE SET seq = max(seq, excluded.seq), updated_at = excluded.updated_at
"""

UPSERT_SITE = """
INSERT INTO sites (id, name_vi, name_en, kind, parent, legacy_name, lat, lon, active, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (id) DO UPDATE SET name_vi = excluded.name_vi, name_en = excluded.name_en,
    kind = excluded.kind, parent = excluded.parent, legacy_name = excluded.legacy_name,
    lat = excluded.lat, lon = excluded.lon, active = 1, updated_at = excluded.updated_at
"""

UPSERT_GATEWAY = """
INSERT INTO gateways (id, site, name_vi, name_en, lat, lon, active, updated_at)
VALUES (?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (id) DO UPDATE SET site = excluded.site, name_vi = excluded.name_vi,
    name_en = excluded.name_en, lat = excluded.lat, lon = excluded.lon, active = 1,
    updated_at = excluded.updated_at
"""

UPSERT_SENSOR = """
INSERT INTO sensors (id, gateway, site, kind, metrics, interval_s, name_vi, name_en, lat, lon, attrs,
                     active, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (id) DO UPDATE SET gateway = excluded.gateway, site = excluded.site, kind = excluded.kind,
    metrics = excluded.metrics, interval_s = excluded.interval_s, name_vi = excluded.name_vi,
    name_en = excluded.name_en, lat = excluded.lat, lon = excluded.lon, attrs = excluded.attrs,
    active = 1, updated_at = excluded.updated_at
"""

UPSERT_METRIC = """
INSERT INTO metrics (code, unit, name_vi, name_en, min, max, boolean) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (code) DO UPDATE SET unit = excluded.unit, name_vi = excluded.name_vi,
    name_en = excluded.name_en, min = excluded.min, max = excluded.max, boolean = excluded.boolean
"""

# Rollups, incrementally (see ingest/stores/postgres.py): the readings of the batches after the
# checkpoint, aggregated per minute or hour (a prefix of the time text) and merged.
MERGE_ROLLUP = """
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
ROLLUPS = tuple(MERGE_ROLLUP.format(table=table, prefix=prefix, suffix=suffix, qualities=QUALITIES_SQL)
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


def translate(exc: sqlite3.Error) -> StoreUnavailable | StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in TRANSIENT:
        return StoreUnavailable(f"sqlite: {exc}")
    return StoreError(f"sqlite: {exc}")
