-- A retained message that is poison (a status no store can take) comes back on every restart
-- of every worker: it is dead-lettered once. `once_key` (BLAKE2b-128 of topic and payload) is
-- set on such letters only; a letter whose key is stored already is not stored again
-- (INSERT ... ON CONFLICT DO NOTHING). Other letters leave it NULL (never unique-checked).
-- (Applied once, recorded in schema_migrations in the same transaction: SQLite has no
-- ADD COLUMN IF NOT EXISTS.)
ALTER TABLE dead_letters ADD COLUMN once_key BLOB;
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_once_idx ON dead_letters (once_key) WHERE once_key IS NOT NULL;
