-- As 0006_notifications.postgresql.sql (times are RFC 3339 UTC text, as in 0001).
-- Notifications (issue #13, docs/contract.md "Additions → Notifications and escalation"): the
-- outbox of the ops service. A row is written in the same transaction as the incident change
-- that causes it, and the sender loop delivers it and records each attempt. The unique key
-- (incident, contact, channel, reason) makes a replayed step a no-op: at most one message per
-- key. `delivery` is the id of the message that carried the row (itself, or the digest a burst
-- was folded into); `ack_used_at` makes the acknowledge link single-use. The `site` column puts
-- the table under row-level security like the other site tables.
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    site TEXT NOT NULL,
    contact TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'zalo', 'webhook')),
    reason TEXT NOT NULL CHECK (reason IN ('opened', 'escalated', 'severity', 'resolved')),
    step            INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_attempt_at TEXT,
    sent_at         TEXT,
    error TEXT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    delivery TEXT,
    ack_used_at     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS notifications_key
    ON notifications (incident_id, contact, channel, reason);
CREATE INDEX IF NOT EXISTS notifications_due_idx ON notifications (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_contact_sent_idx ON notifications (contact, channel, sent_at);
CREATE INDEX IF NOT EXISTS notifications_site_idx ON notifications (site, created_at DESC);
