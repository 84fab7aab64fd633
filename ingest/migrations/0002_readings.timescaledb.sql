-- Readings as a TimescaleDB hypertable on `time` (1-day chunks: retention drops whole days).
-- The unique key includes `time`, as every unique key of a hypertable must. No default
-- `time DESC` index: chunk exclusion already narrows time ranges, and each index costs
-- insert throughput.
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
-- Batch ids grow with insertion: a BRIN index (one per chunk) finds the readings of recent
-- batches (what the rollups and the InfluxDB mirror read) for almost nothing; autovacuum
-- summarizes each block range as soon as it is full.
CREATE INDEX IF NOT EXISTS readings_batch_brin ON readings USING brin (batch_id) WITH (autosummarize = on);
SELECT create_hypertable(
    'readings', 'time',
    chunk_time_interval => INTERVAL '1 day',
    create_default_indexes => false,
    if_not_exists => true
);
