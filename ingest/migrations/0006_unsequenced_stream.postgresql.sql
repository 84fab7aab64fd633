-- Unsequenced messages (SenML, RFC 8428: no `seq`) in the stored stream. One row per stored
-- message, written in the same transaction as its readings, whose `readings.batch_id` is this
-- row's id. The ids are drawn from the sequence of ingest_batches.id (the ingest calls nextval
-- on it), so one id space names every stored batch, sequenced or not, and the followers of the
-- stream (rollups, the InfluxDB mirror: ingest/stores/postgres.py) read both tables by `xact`.
-- Kept apart from ingest_batches on purpose: it has no `seq`, so seq gaps, completeness,
-- watermarks and every (gateway, seq) consumer never see it.
CREATE TABLE IF NOT EXISTS ingest_unsequenced (
    id          bigint PRIMARY KEY,
    xact        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    kind        text NOT NULL DEFAULT 'senml' CHECK (kind IN ('senml')),
    gateway     text COLLATE "C" NOT NULL,
    site        text COLLATE "C",
    received_at timestamptz NOT NULL,
    readings    integer NOT NULL
);
CREATE INDEX IF NOT EXISTS ingest_unsequenced_xact_idx ON ingest_unsequenced (xact);
CREATE INDEX IF NOT EXISTS ingest_unsequenced_received_idx ON ingest_unsequenced (received_at);
