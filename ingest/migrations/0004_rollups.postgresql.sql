-- Rollups kept by the platform (ingest/rollup.py, refreshed from the stored stream): per
-- (sensor, metric) and minute / hour, over the readings whose quality is `good` or `suspect`
-- (readings flagged bad, or taken while calibrating or in maintenance, describe the
-- instrument, not the environment; TT 10/2021/TT-BTNMT treats calibration periods the same
-- way). `sum` lets coarser buckets be built from finer ones exactly: avg = sum / count.
CREATE TABLE IF NOT EXISTS readings_1m (
    bucket timestamptz NOT NULL,
    site   text COLLATE "C" NOT NULL,
    sensor text COLLATE "C" NOT NULL,
    metric text COLLATE "C" NOT NULL,
    avg    double precision NOT NULL,
    min    double precision NOT NULL,
    max    double precision NOT NULL,
    count  bigint NOT NULL,
    sum    double precision NOT NULL,
    PRIMARY KEY (sensor, metric, bucket)
);
CREATE INDEX IF NOT EXISTS readings_1m_bucket_idx ON readings_1m (bucket);

CREATE TABLE IF NOT EXISTS readings_1h (
    bucket timestamptz NOT NULL,
    site   text COLLATE "C" NOT NULL,
    sensor text COLLATE "C" NOT NULL,
    metric text COLLATE "C" NOT NULL,
    avg    double precision NOT NULL,
    min    double precision NOT NULL,
    max    double precision NOT NULL,
    count  bigint NOT NULL,
    sum    double precision NOT NULL,
    PRIMARY KEY (sensor, metric, bucket)
);
CREATE INDEX IF NOT EXISTS readings_1h_bucket_idx ON readings_1h (bucket);
