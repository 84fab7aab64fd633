-- As 0005_sessions.postgresql.sql. Times are the ingest's fixed-width UTC text.
CREATE TABLE IF NOT EXISTS sessions (
    id             TEXT PRIMARY KEY,
    user_name      TEXT NOT NULL,
    refresh_jti    TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    revoked_at     TEXT,
    revoked_reason TEXT CHECK (revoked_reason IN ('logout', 'reuse'))
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON sessions (user_name, expires_at);
CREATE TABLE IF NOT EXISTS stream_tickets (
    ticket_hash       TEXT PRIMARY KEY,
    user_name         TEXT NOT NULL,
    session_id        TEXT,
    token_version     INTEGER NOT NULL,
    access_expires_at TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    used_at           TEXT
);
CREATE INDEX IF NOT EXISTS stream_tickets_expires_idx ON stream_tickets (expires_at);
