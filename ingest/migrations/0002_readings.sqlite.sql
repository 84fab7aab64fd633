-- Readings. `time` is RFC 3339 UTC text of fixed width, always with microseconds and `Z`
-- ('2026-11-28T04:59:58.000000Z'): it sorts as time does, so range predicates use the key,
-- people and Grafana's SQLite data source read it as a time, and a minute or hour bucket is
-- a prefix of it (ingest/stores/sqlite.py: sqlite_time). WITHOUT ROWID: the key is the
-- table, one B-tree per insert instead of two, and a series is stored contiguously.
CREATE TABLE IF NOT EXISTS readings (
    time    TEXT NOT NULL,
    site    TEXT NOT NULL,
    gateway TEXT NOT NULL,
    sensor  TEXT NOT NULL,
    metric  TEXT NOT NULL,
    value   REAL NOT NULL,
    quality TEXT NOT NULL DEFAULT 'good',
    batch_id INTEGER,  -- ingest_batches.id of the batch that stored it; NULL if loaded otherwise
    PRIMARY KEY (sensor, metric, time)
) WITHOUT ROWID;
-- The InfluxDB mirror reads the readings of the batches after its checkpoint.
CREATE INDEX IF NOT EXISTS readings_batch_idx ON readings (batch_id);
