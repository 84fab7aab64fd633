-- The TT 10/2021 feed's upload log (feeds/tt10/uploads.py writes it, the ops API reads it:
-- GET /api/v1/feeds/tt10). One row per cycle file: `pending` (written, not tried yet), `sent`,
-- or `failed` (the last try failed; it is tried again). `cycle` is the cycle's label (its end,
-- docs/contract.md "Regulatory feed"); `station` is <prefix>_<STATION>. The `site` column puts the
-- table under row-level security (ops_center/security/rls.py).
CREATE TABLE IF NOT EXISTS tt10_uploads (
    file            text COLLATE "C" PRIMARY KEY,
    site            text COLLATE "C" NOT NULL,
    sensor          text COLLATE "C" NOT NULL,
    station         text COLLATE "C" NOT NULL,
    cycle           timestamptz NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    bytes           integer NOT NULL,
    target          text,
    created_at      timestamptz NOT NULL,
    last_attempt_at timestamptz,
    sent_at         timestamptz,
    error           text
);
CREATE INDEX IF NOT EXISTS tt10_uploads_site_cycle_idx ON tt10_uploads (site, cycle DESC, file);
CREATE INDEX IF NOT EXISTS tt10_uploads_site_state_idx ON tt10_uploads (site, state);
