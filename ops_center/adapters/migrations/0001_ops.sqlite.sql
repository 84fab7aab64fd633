-- As 0001_ops.postgresql.sql. Times are RFC 3339 UTC text of fixed width with microseconds
-- and `Z` (the ingest's format, so that they compare with the readings' times); lists are
-- JSON text.
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('ward_staff', 'cluster_manager', 'city_leader', 'admin')),
    sites         TEXT NOT NULL DEFAULT '[]',
    disabled      INTEGER NOT NULL DEFAULT 0,
    token_version INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS incidents (
    id              TEXT PRIMARY KEY,
    site            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical', 'emergency')),
    state           TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    title_vi        TEXT NOT NULL,
    title_en        TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    acknowledged_at TEXT,
    resolved_at     TEXT,
    assignee        TEXT,
    escalated_at    TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_site_state_idx ON incidents (site, state, opened_at DESC);
CREATE INDEX IF NOT EXISTS incidents_opened_idx ON incidents (opened_at DESC);

CREATE TABLE IF NOT EXISTS alerts (
    id          TEXT PRIMARY KEY,
    rule        TEXT NOT NULL,
    site        TEXT NOT NULL,
    gateway     TEXT,
    sensor      TEXT,
    metric      TEXT,
    severity    TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical', 'emergency')),
    state       TEXT NOT NULL CHECK (state IN ('active', 'cleared')),
    opened_at   TEXT NOT NULL,
    cleared_at  TEXT,
    incident_id TEXT,
    late        INTEGER NOT NULL DEFAULT 0,
    value       REAL,
    detail      TEXT,
    category    TEXT,
    message_vi  TEXT,
    message_en  TEXT,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_site_state_idx ON alerts (site, state, opened_at DESC);
CREATE INDEX IF NOT EXISTS alerts_opened_idx ON alerts (opened_at DESC);
CREATE INDEX IF NOT EXISTS alerts_incident_idx ON alerts (incident_id);

CREATE TABLE IF NOT EXISTS incident_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    site        TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS incident_events_incident_idx ON incident_events (incident_id, at, id);

CREATE TABLE IF NOT EXISTS audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    site    TEXT,
    ip      TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
    detail  TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at DESC);

CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only (UPDATE refused)');
END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only (DELETE refused)');
END;

CREATE TABLE IF NOT EXISTS gateway_status (
    gateway         TEXT PRIMARY KEY,
    site            TEXT NOT NULL,
    state           TEXT NOT NULL,
    last_seen       TEXT NOT NULL,
    outbox_batches  INTEGER NOT NULL DEFAULT 0,
    outbox_oldest   TEXT,
    dropped_batches INTEGER NOT NULL DEFAULT 0,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    agent           TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_status_site_idx ON gateway_status (site);

CREATE TABLE IF NOT EXISTS maintenance_windows (
    id         TEXT PRIMARY KEY,
    site       TEXT NOT NULL,
    scope      TEXT NOT NULL CHECK (scope IN ('sensor', 'gateway', 'site')),
    target     TEXT NOT NULL,
    starts_at  TEXT NOT NULL,
    ends_at    TEXT,
    set_by     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS maintenance_windows_site_idx ON maintenance_windows (site, starts_at);

CREATE TABLE IF NOT EXISTS security_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    source  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    site    TEXT,
    gateway TEXT,
    client  TEXT,
    ip      TEXT,
    detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS security_events_at_idx ON security_events (at DESC);
