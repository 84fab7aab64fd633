-- Notifications (issue #13, docs/contract.md "Additions → Notifications and escalation"): the
-- outbox of the ops service. A row is written in the same transaction as the incident change
-- that causes it, and the sender loop delivers it and records each attempt. The unique key
-- (incident, contact, channel, reason) makes a replayed step a no-op: at most one message per
-- key. `delivery` is the id of the message that carried the row (itself, or the digest a burst
-- was folded into); `ack_used_at` makes the acknowledge link single-use. The `site` column puts
-- the table under row-level security like the other site tables.
CREATE TABLE IF NOT EXISTS notifications (
    id              text COLLATE "C" PRIMARY KEY,
    incident_id     text COLLATE "C" NOT NULL,
    site            text COLLATE "C" NOT NULL,
    contact         text COLLATE "C" NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms', 'zalo', 'webhook')),
    reason          text NOT NULL CHECK (reason IN ('opened', 'escalated', 'severity', 'resolved')),
    step            integer NOT NULL DEFAULT 0,
    state           text NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    last_attempt_at timestamptz,
    sent_at         timestamptz,
    error           text,
    subject         text NOT NULL,
    body            text NOT NULL,
    delivery        text,
    ack_used_at     timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS notifications_key
    ON notifications (incident_id, contact, channel, reason);
CREATE INDEX IF NOT EXISTS notifications_due_idx ON notifications (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_contact_sent_idx ON notifications (contact, channel, sent_at);
CREATE INDEX IF NOT EXISTS notifications_site_idx ON notifications (site, created_at DESC);
