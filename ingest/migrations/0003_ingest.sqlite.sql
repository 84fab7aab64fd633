-- As 0003_ingest.postgresql.sql. SQLite has one writer at a time, so ids commit in order
-- and are the stream's checkpoints by themselves (AUTOINCREMENT: never reused).
CREATE TABLE IF NOT EXISTS ingest_batches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    site        TEXT,
    received_at TEXT NOT NULL,
    readings    INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('stored', 'dead_letter')),
    digest      BLOB NOT NULL,
    UNIQUE (gateway, seq)
);
CREATE INDEX IF NOT EXISTS ingest_batches_received_idx ON ingest_batches (received_at);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    topic       TEXT NOT NULL,
    gateway     TEXT,
    site        TEXT,
    seq         INTEGER,
    reason      TEXT NOT NULL CHECK (reason IN ('bad_json', 'schema', 'unknown_sensor', 'topic_mismatch',
                                                'oversize', 'time_window', 'conflict', 'non_finite')),
    detail      TEXT NOT NULL,
    payload     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX IF NOT EXISTS dead_letters_site_idx ON dead_letters (site, received_at);

CREATE TABLE IF NOT EXISTS gateway_watermarks (
    gateway    TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS stream_checkpoints (
    name       TEXT PRIMARY KEY,
    checkpoint INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS gateway_drops (
    gateway     TEXT NOT NULL,
    through_seq INTEGER NOT NULL,
    declared_at TEXT NOT NULL,
    PRIMARY KEY (gateway, through_seq)
);

CREATE VIEW IF NOT EXISTS seq_gaps AS
WITH ordered AS (
    SELECT gateway, seq, lag(seq, 1, 0) OVER (PARTITION BY gateway ORDER BY seq) AS prev
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
       max(0, min(g.last_seq, coalesce(d.through, 0)) - g.first_seq + 1) AS lost
FROM gaps g LEFT JOIN drops d USING (gateway);

CREATE VIEW IF NOT EXISTS gateway_completeness AS
WITH b AS (
    SELECT gateway,
           max(seq) AS top,
           count(*) FILTER (WHERE outcome = 'stored') AS stored,
           count(*) FILTER (WHERE outcome = 'dead_letter') AS dead_lettered
    FROM ingest_batches GROUP BY gateway
), d AS (
    SELECT gateway, max(through_seq) AS through FROM gateway_drops GROUP BY gateway
), g AS (
    SELECT gateway, sum(missing) AS missing, sum(lost) AS lost FROM seq_gaps GROUP BY gateway
), ids AS (
    SELECT gateway FROM b UNION SELECT gateway FROM d
), c AS (
    SELECT ids.gateway,
           max(coalesce(b.top, 0), coalesce(d.through, 0)) AS expected,
           coalesce(b.stored, 0) AS stored,
           coalesce(b.dead_lettered, 0) AS dead_lettered,
           coalesce(g.lost, 0) AS lost,
           coalesce(g.missing, 0) - coalesce(g.lost, 0) AS pending
    FROM ids LEFT JOIN b USING (gateway) LEFT JOIN d USING (gateway) LEFT JOIN g USING (gateway)
)
SELECT c.gateway, gw.site, c.expected, c.stored, c.dead_lettered, c.lost, c.pending,
       round(100.0 * c.stored / nullif(c.expected, 0), 2) AS completeness_pct
FROM c LEFT JOIN gateways gw ON gw.id = c.gateway;
