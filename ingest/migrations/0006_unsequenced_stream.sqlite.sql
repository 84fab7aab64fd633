-- As 0006_unsequenced_stream.postgresql.sql. The ids share the id space of ingest_batches:
-- the ingest takes the next one from sqlite_sequence's row of ingest_batches (AUTOINCREMENT)
-- and moves that row on, inside the single writer's transaction, so the stream's checkpoints
-- (ids in commit order) cover both tables.
CREATE TABLE IF NOT EXISTS ingest_unsequenced (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL DEFAULT 'senml' CHECK (kind IN ('senml')),
    gateway     TEXT NOT NULL,
    site        TEXT,
    received_at TEXT NOT NULL,
    readings    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ingest_unsequenced_received_idx ON ingest_unsequenced (received_at);
