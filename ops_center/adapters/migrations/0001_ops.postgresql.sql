-- The operations center's tables. Names and columns of `alerts` and `incidents` are part of
-- the contract (docs/contract.md, Store schema): Grafana and city systems query them. Every
-- table whose rows belong to a site has a `site` column, which row-level security filters
-- on (ops_center/security/rls.py).

CREATE TABLE IF NOT EXISTS users (
    name          text COLLATE "C" PRIMARY KEY,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('ward_staff', 'cluster_manager', 'city_leader', 'admin')),
    sites         text[] NOT NULL DEFAULT '{}',
    disabled      boolean NOT NULL DEFAULT false,
    -- Bumped when the password changes or the user is disabled: every token issued
    -- before carries the old version and is refused.
    token_version integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS incidents (
    id              text COLLATE "C" PRIMARY KEY,
    site            text COLLATE "C" NOT NULL,
    kind            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical', 'emergency')),
    state           text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    title_vi        text NOT NULL,
    title_en        text NOT NULL,
    opened_at       timestamptz NOT NULL,
    acknowledged_at timestamptz,
    resolved_at     timestamptz,
    assignee        text,
    escalated_at    timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_site_state_idx ON incidents (site, state, opened_at DESC);
CREATE INDEX IF NOT EXISTS incidents_opened_idx ON incidents (opened_at DESC);

-- No foreign key to incidents: the ops service may store an alert before the incident it
-- joins (both are upserted, in either order).
CREATE TABLE IF NOT EXISTS alerts (
    id          text COLLATE "C" PRIMARY KEY,
    rule        text NOT NULL,
    site        text COLLATE "C" NOT NULL,
    gateway     text COLLATE "C",
    sensor      text COLLATE "C",
    metric      text COLLATE "C",
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical', 'emergency')),
    state       text NOT NULL CHECK (state IN ('active', 'cleared')),
    opened_at   timestamptz NOT NULL,
    cleared_at  timestamptz,
    incident_id text COLLATE "C",
    late        boolean NOT NULL DEFAULT false,
    value       double precision,
    detail      text,
    category    text,
    message_vi  text,
    message_en  text,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_site_state_idx ON alerts (site, state, opened_at DESC);
CREATE INDEX IF NOT EXISTS alerts_opened_idx ON alerts (opened_at DESC);
CREATE INDEX IF NOT EXISTS alerts_incident_idx ON alerts (incident_id);

CREATE TABLE IF NOT EXISTS incident_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id text COLLATE "C" NOT NULL,
    site        text COLLATE "C" NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      text
);
CREATE INDEX IF NOT EXISTS incident_events_incident_idx ON incident_events (incident_id, at, id);

CREATE TABLE IF NOT EXISTS audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text,
    site    text COLLATE "C",
    ip      text,
    outcome text NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
    detail  text
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at DESC);

-- Append-only, for the owner too: a trigger refuses UPDATE, DELETE and TRUNCATE. Removing
-- it takes DDL, which is itself visible in the server log.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

CREATE TABLE IF NOT EXISTS gateway_status (
    gateway         text COLLATE "C" PRIMARY KEY,
    site            text COLLATE "C" NOT NULL,
    state           text NOT NULL,
    last_seen       timestamptz NOT NULL,
    outbox_batches  integer NOT NULL DEFAULT 0,
    outbox_oldest   timestamptz,
    dropped_batches bigint NOT NULL DEFAULT 0,
    last_seq        bigint NOT NULL DEFAULT 0,
    agent           text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS gateway_status_site_idx ON gateway_status (site);

CREATE TABLE IF NOT EXISTS maintenance_windows (
    id         text COLLATE "C" PRIMARY KEY,
    site       text COLLATE "C" NOT NULL,
    scope      text NOT NULL CHECK (scope IN ('sensor', 'gateway', 'site')),
    target     text COLLATE "C" NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz,
    set_by     text NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS maintenance_windows_site_idx ON maintenance_windows (site, starts_at);

CREATE TABLE IF NOT EXISTS security_events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    source  text NOT NULL,
    kind    text NOT NULL,
    site    text COLLATE "C",
    gateway text COLLATE "C",
    client  text,
    ip      text,
    detail  text NOT NULL
);
CREATE INDEX IF NOT EXISTS security_events_at_idx ON security_events (at DESC);
