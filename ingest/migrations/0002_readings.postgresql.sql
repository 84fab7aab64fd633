-- Readings: one row per (sensor, metric, time). The unique key is also the index that the
-- API's and Grafana's series queries use (sensor = ? AND metric = ? AND time BETWEEN ...).
-- `site` and `gateway` are copied from the registry at write time: the API and row-level
-- security filter on `site` without a join.
CREATE TABLE IF NOT EXISTS readings (
    time    timestamptz NOT NULL,
    site    text COLLATE "C" NOT NULL,
    gateway text COLLATE "C" NOT NULL,
    sensor  text COLLATE "C" NOT NULL,
    metric  text COLLATE "C" NOT NULL,
    value   double precision NOT NULL,
    quality text COLLATE "C" NOT NULL DEFAULT 'good',
    batch_id bigint,  -- ingest_batches.id of the batch that stored it; NULL if loaded otherwise
    CONSTRAINT readings_sensor_metric_time_key UNIQUE (sensor, metric, time)
);
-- Plain PostgreSQL has no chunks: a BRIN index (a few pages, nearly free to maintain on
-- time-ordered inserts) keeps time-range scans and retention deletes from reading it all.
-- autosummarize: autovacuum summarizes each block range as soon as it is full.
CREATE INDEX IF NOT EXISTS readings_time_brin ON readings USING brin (time) WITH (autosummarize = on);
-- Batch ids grow with insertion: a BRIN index finds the readings of recent batches (what the
-- rollups and the InfluxDB mirror read) for almost nothing.
CREATE INDEX IF NOT EXISTS readings_batch_brin ON readings USING brin (batch_id) WITH (autosummarize = on);
