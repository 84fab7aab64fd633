-- Registry, as in 0001_registry.postgresql.sql. Lists (metrics) and maps (attrs) are JSON
-- text; times are RFC 3339 UTC text (see 0002_readings.sqlite.sql).
CREATE TABLE IF NOT EXISTS sites (
    id          TEXT PRIMARY KEY,
    name_vi     TEXT NOT NULL,
    name_en     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    parent      TEXT,
    legacy_name TEXT,
    lat         REAL,
    lon         REAL,
    active      INTEGER NOT NULL DEFAULT 1,
    updated_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS gateways (
    id         TEXT PRIMARY KEY,
    site       TEXT NOT NULL REFERENCES sites (id),
    name_vi    TEXT,
    name_en    TEXT,
    lat        REAL,
    lon        REAL,
    active     INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gateways_site_idx ON gateways (site);

CREATE TABLE IF NOT EXISTS sensors (
    id         TEXT PRIMARY KEY,
    gateway    TEXT NOT NULL REFERENCES gateways (id),
    site       TEXT NOT NULL REFERENCES sites (id),
    kind       TEXT NOT NULL,
    metrics    TEXT NOT NULL,
    interval_s INTEGER NOT NULL,
    name_vi    TEXT NOT NULL,
    name_en    TEXT NOT NULL,
    lat        REAL,
    lon        REAL,
    attrs      TEXT NOT NULL DEFAULT '{}',
    active     INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sensors_site_idx ON sensors (site);
CREATE INDEX IF NOT EXISTS sensors_gateway_idx ON sensors (gateway);

CREATE TABLE IF NOT EXISTS metrics (
    code    TEXT PRIMARY KEY,
    unit    TEXT NOT NULL,
    name_vi TEXT NOT NULL,
    name_en TEXT NOT NULL,
    min     REAL NOT NULL,
    max     REAL NOT NULL,
    boolean INTEGER NOT NULL DEFAULT 0
);
