-- As 0004_rollups.postgresql.sql. `bucket` is the bucket's start in the readings' time
-- format ('2026-11-28T04:59:00.000000Z').
CREATE TABLE IF NOT EXISTS readings_1m (
    bucket TEXT NOT NULL,
    site   TEXT NOT NULL,
    sensor TEXT NOT NULL,
    metric TEXT NOT NULL,
    avg    REAL NOT NULL,
    min    REAL NOT NULL,
    max    REAL NOT NULL,
    count  INTEGER NOT NULL,
    sum    REAL NOT NULL,
    PRIMARY KEY (sensor, metric, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_1m_bucket_idx ON readings_1m (bucket);

CREATE TABLE IF NOT EXISTS readings_1h (
    bucket TEXT NOT NULL,
    site   TEXT NOT NULL,
    sensor TEXT NOT NULL,
    metric TEXT NOT NULL,
    avg    REAL NOT NULL,
    min    REAL NOT NULL,
    max    REAL NOT NULL,
    count  INTEGER NOT NULL,
    sum    REAL NOT NULL,
    PRIMARY KEY (sensor, metric, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_1h_bucket_idx ON readings_1h (bucket);
