-- As 0004_commands.postgresql.sql. Times are the ingest's fixed-width UTC text; args are
-- JSON text.
CREATE TABLE IF NOT EXISTS commands (
    id         TEXT PRIMARY KEY,
    site       TEXT NOT NULL,
    gateway    TEXT NOT NULL,
    sensor     TEXT NOT NULL,
    name       TEXT NOT NULL,
    args       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'failed', 'expired')),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    result_at  TEXT,
    detail     TEXT
);
CREATE INDEX IF NOT EXISTS commands_site_created_idx ON commands (site, created_at DESC, id);
