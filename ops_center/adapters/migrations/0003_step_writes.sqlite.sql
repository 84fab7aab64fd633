-- As 0003_step_writes.postgresql.sql.
-- One evaluation step of the ops service is one transaction (issue #4, restart without
-- duplicates): a restart replays what the last snapshot lacks, so the timeline needs a key
-- that makes a replayed entry a no-op. Older databases may already hold duplicates from
-- replays before this key existed: the first of each is kept.
DELETE FROM incident_events WHERE id NOT IN (
    SELECT min(id) FROM incident_events GROUP BY incident_id, at, actor, action, COALESCE(detail, '')
);
CREATE UNIQUE INDEX IF NOT EXISTS incident_events_entry_key
    ON incident_events (incident_id, at, actor, action, COALESCE(detail, ''));

-- The service's rule state, written in the same transaction as the step it covers. The same
-- table (and columns) the service created for itself before this migration.
CREATE TABLE IF NOT EXISTS ops_service_state (
    name     TEXT PRIMARY KEY,
    saved_at TEXT NOT NULL,
    data     BLOB NOT NULL
);
