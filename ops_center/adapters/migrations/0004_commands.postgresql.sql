-- Operator commands to devices (docs/contract.md `cmd` / `cmd/result`) and what became of them.
-- `state` is what the edge answered (`applied`, `failed`, `expired`) or `pending`; a pending
-- command past `expires_at` is shown as expired (the edge would refuse it now). The `site`
-- column puts the table under row-level security (ops_center/security/rls.py).
CREATE TABLE IF NOT EXISTS commands (
    id         text COLLATE "C" PRIMARY KEY,
    site       text COLLATE "C" NOT NULL,
    gateway    text COLLATE "C" NOT NULL,
    sensor     text COLLATE "C" NOT NULL,
    name       text NOT NULL,
    args       text NOT NULL,
    state      text NOT NULL CHECK (state IN ('pending', 'applied', 'failed', 'expired')),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    result_at  timestamptz,
    detail     text
);
CREATE INDEX IF NOT EXISTS commands_site_created_idx ON commands (site, created_at DESC, id);
