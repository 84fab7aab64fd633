-- As 0007_tt10_uploads.postgresql.sql. Times are the ingest's fixed-width UTC text.
CREATE TABLE IF NOT EXISTS tt10_uploads (
    file            TEXT PRIMARY KEY,
    site            TEXT NOT NULL,
    sensor          TEXT NOT NULL,
    station         TEXT NOT NULL,
    cycle           TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    bytes           INTEGER NOT NULL,
    target          TEXT,
    created_at      TEXT NOT NULL,
    last_attempt_at TEXT,
    sent_at         TEXT,
    error           TEXT
);
CREATE INDEX IF NOT EXISTS tt10_uploads_site_cycle_idx ON tt10_uploads (site, cycle DESC, file);
CREATE INDEX IF NOT EXISTS tt10_uploads_site_state_idx ON tt10_uploads (site, state);
