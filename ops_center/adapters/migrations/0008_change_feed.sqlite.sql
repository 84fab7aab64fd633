-- As 0008_change_feed.postgresql.sql: SQLite has no NOTIFY, and a SQLite store has one
-- `ops serve` (its feed is fed in process). Nothing to create; the version keeps the numbering.
SELECT 1;
