-- One evaluation step of the ops service is one transaction (issue #4, restart without
-- duplicates): a restart replays what the last snapshot lacks, so the timeline needs a key
-- that makes a replayed entry a no-op (INSERT ... ON CONFLICT DO NOTHING). Older databases
-- may already hold duplicates from replays before this key existed: the first of each is kept.
-- `detail` is free text (a person's note): hashed in the key, a B-tree entry has a size limit.
DELETE FROM incident_events e USING incident_events k
 WHERE e.incident_id = k.incident_id AND e.at = k.at AND e.actor = k.actor AND e.action = k.action
   AND COALESCE(e.detail, '') = COALESCE(k.detail, '') AND e.id > k.id;
CREATE UNIQUE INDEX IF NOT EXISTS incident_events_entry_key
    ON incident_events (incident_id, at, actor, action, md5(COALESCE(detail, '')));

-- The service's rule state, written in the same transaction as the step it covers. The same
-- table (and columns) the service created for itself before this migration.
CREATE TABLE IF NOT EXISTS ops_service_state (
    name     text PRIMARY KEY,
    saved_at timestamptz NOT NULL,
    data     bytea NOT NULL
);
