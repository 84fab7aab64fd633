-- Login sessions and live-stream tickets (issue #10; ops_center/adapters/sessions.py).
-- A session has exactly one valid refresh token (`refresh_jti`); presenting another one of
-- the session revokes it (`revoked_reason` = 'reuse'), as does a logout ('logout').
-- No `site` column: these rows are nobody's dashboard data (ops_center/security/rls.py grants
-- only site-scoped tables to read-only roles).
CREATE TABLE IF NOT EXISTS sessions (
    id             text COLLATE "C" PRIMARY KEY,
    user_name      text NOT NULL,
    refresh_jti    text COLLATE "C" NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text CHECK (revoked_reason IN ('logout', 'reuse'))
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON sessions (user_name, expires_at);
-- A ticket is stored only as its SHA-256 (hex); single use (`used_at`), short-lived.
CREATE TABLE IF NOT EXISTS stream_tickets (
    ticket_hash       text COLLATE "C" PRIMARY KEY,
    user_name         text NOT NULL,
    session_id        text,
    token_version     bigint NOT NULL,
    access_expires_at timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    used_at           timestamptz
);
CREATE INDEX IF NOT EXISTS stream_tickets_expires_idx ON stream_tickets (expires_at);
