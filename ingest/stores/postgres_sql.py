"""The SQL of ``PostgresStore`` (ingest/stores/postgres.py): the write path's statements, the
stored stream, the registry upserts and the incremental rollups. Text only, no connection."""

from __future__ import annotations

import functools

from psycopg import sql

from ingest.migrations import Flavor
from ingest.stores.records import ROLLUP_QUALITIES

# Advisory lock keys (any constant bigint unique to this use).
MIGRATE_LOCK = 0x534D_5744_0001  # "SMWD" 1
ROLLUP_LOCK = 0x534D_5744_0002


# Session-local staging for the careful write path, made once per pooled connection. ON
# COMMIT DELETE ROWS empties it at every commit without the catalog churn of creating and
# dropping a table per write.
SESSION_SETUP = b"""
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

READINGS_COPY = ("COPY readings (time, site, gateway, sensor, metric, value, quality, batch_id) "
                 "FROM STDIN (FORMAT BINARY)")
READINGS_TYPES = ["timestamptz", "text", "text", "text", "text", "float8", "text", "int8"]

STAGE_COPY = ("COPY pg_temp.readings_stage (b, time, site, gateway, sensor, metric, value, quality, "
              "batch_id) FROM STDIN (FORMAT BINARY)")
STAGE_TYPES = ["int4", "timestamptz", "text", "text", "text", "text", "float8", "text", "int8"]

CLAIM = """
INSERT INTO ingest_batches (gateway, seq, site, received_at, readings, outcome, digest)
SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::timestamptz[], %b::int[], %b::text[],
                     %b::bytea[])
ON CONFLICT (gateway, seq) DO NOTHING
RETURNING gateway, seq, id
"""

PREVIOUS = """
SELECT gateway, seq, outcome, digest FROM ingest_batches
WHERE (gateway, seq) IN (SELECT * FROM unnest(%b::text[], %b::bigint[]))
"""

INSERT_READINGS = """
INSERT INTO readings (time, site, gateway, sensor, metric, value, quality, batch_id)
SELECT time, site, gateway, sensor, metric, value, quality, batch_id FROM pg_temp.readings_stage
ON CONFLICT (sensor, metric, time) DO NOTHING
"""

# Stored rows that differ from a staged one: all the slow path needs to find conflicts.
DIFFERING = """
SELECT DISTINCT r.sensor, r.metric, r.time, r.value, r.quality
FROM pg_temp.readings_stage s
JOIN readings r ON r.sensor = s.sensor AND r.metric = s.metric AND r.time = s.time
WHERE r.value <> s.value OR r.quality <> s.quality
"""

MARK_CONFLICTS = """
UPDATE ingest_batches SET outcome = 'dead_letter'
WHERE (gateway, seq) IN (SELECT * FROM unnest(%s::text[], %s::bigint[]))
"""

INSERT_DEAD = """
INSERT INTO dead_letters (received_at, topic, gateway, site, seq, reason, detail, payload, once_key)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""

SAVE_MARKS = """
INSERT INTO gateway_watermarks AS w (gateway, seq, updated_at)
SELECT g, s, now() FROM unnest(%b::text[], %b::bigint[]) AS t(g, s)
ON CONFLICT (gateway) DO UPDATE SET seq = GREATEST(w.seq, excluded.seq), updated_at = excluded.updated_at
"""

# The stored stream (what the mirror and the rollups follow): writer transactions after a
# checkpoint, whole, and only those older than every transaction still running, because the
# ids of concurrent writers become visible out of order. The checkpoint is a transaction id.
# Unsequenced batches (SenML: ingest_unsequenced, ids from the same sequence) are part of it.
STREAM_XACTS = """
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
UNSEQUENCED_IDS = """
SELECT nextval(pg_get_serial_sequence('ingest_batches', 'id')) FROM generate_series(1, %s)
"""

INSERT_UNSEQUENCED = """
INSERT INTO ingest_unsequenced (id, gateway, site, received_at, readings) VALUES (%s, %s, %s, %s, %s)
"""

# The readings of some batches: the BRIN index on batch_id narrows to their block ranges.
STREAM_ROWS = """
SELECT time, site, gateway, sensor, metric, value, quality FROM readings
WHERE batch_id BETWEEN %s AND %s AND batch_id = ANY(%s)
ORDER BY batch_id
"""

CHECKPOINT = "SELECT checkpoint FROM stream_checkpoints WHERE name = %s"

SAVE_CHECKPOINT = """
INSERT INTO stream_checkpoints (name, checkpoint) VALUES (%s, %s)
ON CONFLICT (name) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = now()
"""

ROLLUPS = "rollups"  # the rollups' own position in stream_checkpoints

UPSERT_SITE = """
INSERT INTO sites (id, name_vi, name_en, kind, parent, legacy_name, lat, lon)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name_vi = excluded.name_vi, name_en = excluded.name_en,
    kind = excluded.kind, parent = excluded.parent, legacy_name = excluded.legacy_name,
    lat = excluded.lat, lon = excluded.lon, active = true, updated_at = now()
"""

UPSERT_GATEWAY = """
INSERT INTO gateways (id, site, name_vi, name_en, lat, lon) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET site = excluded.site, name_vi = excluded.name_vi,
    name_en = excluded.name_en, lat = excluded.lat, lon = excluded.lon, active = true, updated_at = now()
"""

UPSERT_SENSOR = """
INSERT INTO sensors (id, gateway, site, kind, metrics, interval_s, name_vi, name_en, lat, lon, attrs)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET gateway = excluded.gateway, site = excluded.site, kind = excluded.kind,
    metrics = excluded.metrics, interval_s = excluded.interval_s, name_vi = excluded.name_vi,
    name_en = excluded.name_en, lat = excluded.lat, lon = excluded.lon, attrs = excluded.attrs,
    active = true, updated_at = now()
"""

UPSERT_METRIC = """
INSERT INTO metrics (code, unit, name_vi, name_en, min, max, boolean) VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (code) DO UPDATE SET unit = excluded.unit, name_vi = excluded.name_vi,
    name_en = excluded.name_en, min = excluded.min, max = excluded.max, boolean = excluded.boolean
"""

# Rollups, incrementally: the readings of a page of the stored stream, aggregated per minute
# and per hour and merged into the stored aggregates (count and sum add up, min and max
# widen). Exact because a stored reading never changes (conflicts are dead letters, never
# overwrites) and each page is merged once: the checkpoint moves in the same transaction.
MERGE = """
    ON CONFLICT (sensor, metric, bucket) DO UPDATE SET
        count = t.count + excluded.count, sum = t.sum + excluded.sum,
        min = LEAST(t.min, excluded.min), max = GREATEST(t.max, excluded.max),
        avg = (t.sum + excluded.sum) / (t.count + excluded.count), site = excluded.site
"""

# The page's readings are read and aggregated ONCE, per minute; the hours are built from those
# minute aggregates (count and sum add up, min and max of the minutes), so no reading is
# materialized twice. That halved the rollup's cost per reading (docs/performance.md).
ROLLUP_PAGE = sql.SQL("""
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


def bucket(flavor: Flavor, unit: str, column: str) -> sql.Composable:
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
def rollup_sql(flavor: Flavor) -> bytes:
    return ROLLUP_PAGE.format(
        minute=bucket(flavor, "minute", "time"), hour=bucket(flavor, "hour", "bucket"),
        qualities=sql.SQL(", ").join(sql.Literal(q) for q in ROLLUP_QUALITIES),
        merge=sql.SQL(MERGE)).as_bytes(None)


# The BRIN indexes on readings.batch_id (one per chunk under TimescaleDB) of the chunks that
# may hold the batches of a stream page. Their block ranges written since autovacuum last
# came by are not summarized yet, and a bitmap scan must read every unsummarized range: a
# page of 50k readings read 200k rows on a freshly filled table, and the more so the faster
# the table grows. Summarizing the new ranges first reads each of them once.
BATCH_BRINS = """
SELECT i.indexrelid::regclass::text FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
JOIN pg_attribute att ON att.attrelid = i.indrelid AND att.attnum = i.indkey[0]
WHERE a.amname = 'brin' AND att.attname = 'batch_id' AND i.indrelid = ANY(%s::regclass[])
"""
