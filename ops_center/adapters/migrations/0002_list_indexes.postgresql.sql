-- The list endpoints of one site (`/incidents?site=`, `/alerts?site=`: every operations
-- screen, every second) page newest first: `WHERE site IN (...) ORDER BY opened_at DESC, id
-- LIMIT n`. With the site and that order in one index, a page is the first n entries of one
-- index range (no sort of the site's whole history) and the page's `count(*)` an index-only
-- scan. The (site, state, opened_at) indexes of 0001 stay for `?state=` filters.
CREATE INDEX IF NOT EXISTS incidents_site_opened_idx ON incidents (site, opened_at DESC, id);
CREATE INDEX IF NOT EXISTS alerts_site_opened_idx ON alerts (site, opened_at DESC, id);
-- Open incidents by site and severity (every overview): a partial index of the few open rows.
CREATE INDEX IF NOT EXISTS incidents_unresolved_idx ON incidents (site, severity) WHERE state <> 'resolved';
