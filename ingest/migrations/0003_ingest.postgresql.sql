-- What the ingest did with every batch, dead letters, ack watermarks, declared drops, and
-- the data-completeness views built on them.

-- One row per (gateway, seq) ever handled: the store's idempotence key (RELIABILITY
-- promise 2). `digest` (BLAKE2b-128 of the raw payload) tells a redelivery (same bytes: a
-- no-op) from a conflicting re-send of the same seq (different bytes: a `conflict` dead
-- letter, never a silent drop). `xact` is the writing transaction: the followers of the
-- stored stream (rollups, the InfluxDB mirror) take only transactions older than every
-- running one, since the ids of concurrent writers become visible out of order.
CREATE TABLE IF NOT EXISTS ingest_batches (
    id          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    xact        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    gateway     text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    site        text COLLATE "C",
    received_at timestamptz NOT NULL,
    readings    integer NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('stored', 'dead_letter')),
    digest      bytea NOT NULL,
    PRIMARY KEY (gateway, seq)
);
CREATE INDEX IF NOT EXISTS ingest_batches_received_idx ON ingest_batches (received_at);
CREATE INDEX IF NOT EXISTS ingest_batches_xact_idx ON ingest_batches (xact);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    gateway     text COLLATE "C",
    site        text COLLATE "C",
    seq         bigint,
    reason      text NOT NULL CHECK (reason IN ('bad_json', 'schema', 'unknown_sensor', 'topic_mismatch',
                                                'oversize', 'time_window', 'conflict', 'non_finite')),
    detail      text NOT NULL,
    payload     bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX IF NOT EXISTS dead_letters_site_idx ON dead_letters (site, received_at);

-- Highest contiguous handled seq per gateway (the retained ack). Never moves backwards.
CREATE TABLE IF NOT EXISTS gateway_watermarks (
    gateway    text COLLATE "C" PRIMARY KEY,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Where each follower of the stored stream has got to: `rollups`, and each InfluxDB mirror
-- by its name. A checkpoint is a writer transaction id (see ingest/stores/postgres.py).
CREATE TABLE IF NOT EXISTS stream_checkpoints (
    name       text PRIMARY KEY,
    checkpoint bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The gateway's own declaration (status `dropped_through`) that every unacknowledged seq up
-- to through_seq is gone from its outbox. Those seqs are lost, counted, never waited for.
CREATE TABLE IF NOT EXISTS gateway_drops (
    gateway     text COLLATE "C" NOT NULL,
    through_seq bigint NOT NULL,
    declared_at timestamptz NOT NULL,
    PRIMARY KEY (gateway, through_seq)
);

-- Every run of missing seqs per gateway: between handled seqs, before the first (seqs start
-- at 1) and, when the gateway declared drops past its last handled seq, after it.
-- `lost` is how many of them the gateway declared dropped; the rest may still arrive.
CREATE OR REPLACE VIEW seq_gaps AS
WITH ordered AS (
    SELECT gateway, seq, lag(seq, 1, 0::bigint) OVER (PARTITION BY gateway ORDER BY seq) AS prev
    FROM ingest_batches
), drops AS (
    SELECT gateway, max(through_seq) AS through FROM gateway_drops GROUP BY gateway
), tops AS (
    SELECT gateway, max(seq) AS top FROM ingest_batches GROUP BY gateway
), gaps AS (
    SELECT gateway, prev + 1 AS first_seq, seq - 1 AS last_seq FROM ordered WHERE seq > prev + 1
    UNION ALL
    SELECT d.gateway, coalesce(t.top, 0) + 1, d.through
    FROM drops d LEFT JOIN tops t USING (gateway)
    WHERE d.through > coalesce(t.top, 0)
)
SELECT g.gateway,
       g.first_seq,
       g.last_seq,
       g.last_seq - g.first_seq + 1 AS missing,
       GREATEST(0, LEAST(g.last_seq, coalesce(d.through, 0)) - g.first_seq + 1) AS lost
FROM gaps g LEFT JOIN drops d USING (gateway);

-- Data completeness per gateway over its whole history: `expected` is every seq up to the
-- highest seen (handled or declared dropped); `completeness_pct` is stored / expected.
-- For a period, the API counts ingest_batches by received_at with the same arithmetic.
CREATE OR REPLACE VIEW gateway_completeness AS
WITH b AS (
    SELECT gateway,
           max(seq) AS top,
           count(*) FILTER (WHERE outcome = 'stored') AS stored,
           count(*) FILTER (WHERE outcome = 'dead_letter') AS dead_lettered
    FROM ingest_batches GROUP BY gateway
), d AS (
    SELECT gateway, max(through_seq) AS through FROM gateway_drops GROUP BY gateway
), g AS (
    SELECT gateway, sum(missing)::bigint AS missing, sum(lost)::bigint AS lost FROM seq_gaps GROUP BY gateway
), c AS (
    SELECT coalesce(b.gateway, d.gateway) AS gateway,
           GREATEST(coalesce(b.top, 0), coalesce(d.through, 0)) AS expected,
           coalesce(b.stored, 0) AS stored,
           coalesce(b.dead_lettered, 0) AS dead_lettered,
           coalesce(g.lost, 0) AS lost,
           coalesce(g.missing, 0) - coalesce(g.lost, 0) AS pending
    FROM b FULL JOIN d USING (gateway) LEFT JOIN g ON g.gateway = coalesce(b.gateway, d.gateway)
)
SELECT c.gateway, gw.site, c.expected, c.stored, c.dead_lettered, c.lost, c.pending,
       round(100.0 * c.stored / NULLIF(c.expected, 0), 2) AS completeness_pct
FROM c LEFT JOIN gateways gw ON gw.id = c.gateway;
