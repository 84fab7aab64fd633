-- Under the Timescale license, the rollups are continuous aggregates refreshed by the
-- server's own jobs, with real-time aggregation (materialized_only = false) so that the
-- newest minutes are always current. Same columns and quality filter as the platform's own
-- rollups (0004_rollups.postgresql.sql). Not exercised by the test suite: Debian ships only
-- the Apache edition.
CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket,
       site, sensor, metric,
       avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS count, sum(value) AS sum
FROM readings
WHERE quality IN ('good', 'suspect')
GROUP BY time_bucket(INTERVAL '1 minute', time), site, sensor, metric
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       site, sensor, metric,
       sum(sum) / sum(count) AS avg, min(min) AS min, max(max) AS max, sum(count) AS count, sum(sum) AS sum
FROM readings_1m
GROUP BY time_bucket(INTERVAL '1 hour', bucket), site, sensor, metric
WITH NO DATA;

-- Late data (a gateway back after hours offline) lands up to days in the past: refresh a
-- week back. Readings arriving more than a week late are in `readings` but not in these
-- aggregates (the platform's own rollups have no such horizon).
SELECT add_continuous_aggregate_policy('readings_1m',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '30 seconds', if_not_exists => true);
SELECT add_continuous_aggregate_policy('readings_1h',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '5 minutes', if_not_exists => true);
