-- As 0002_list_indexes.postgresql.sql: a site's page, newest first, straight off one index.
CREATE INDEX IF NOT EXISTS incidents_site_opened_idx ON incidents (site, opened_at DESC, id);
CREATE INDEX IF NOT EXISTS alerts_site_opened_idx ON alerts (site, opened_at DESC, id);
CREATE INDEX IF NOT EXISTS incidents_unresolved_idx ON incidents (site, severity) WHERE state <> 'resolved';
