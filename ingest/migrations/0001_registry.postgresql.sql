-- Registry: sites, gateways, sensors (synced from the registry YAML by sync_registry) and
-- the metric catalog (units and names for dashboards). Ids are slugs: COLLATE "C" makes
-- their comparisons byte-wise, which is both correct for ASCII slugs and the fastest.
-- Rows are never deleted (readings keep pointing at them); a retired id gets active = false.

CREATE TABLE IF NOT EXISTS sites (
    id          text COLLATE "C" PRIMARY KEY,
    name_vi     text NOT NULL,
    name_en     text NOT NULL,
    kind        text NOT NULL,
    parent      text,
    legacy_name text,
    lat         double precision,
    lon         double precision,
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS gateways (
    id         text COLLATE "C" PRIMARY KEY,
    site       text COLLATE "C" NOT NULL REFERENCES sites (id),
    name_vi    text,
    name_en    text,
    lat        double precision,
    lon        double precision,
    active     boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS gateways_site_idx ON gateways (site);

CREATE TABLE IF NOT EXISTS sensors (
    id         text COLLATE "C" PRIMARY KEY,
    gateway    text COLLATE "C" NOT NULL REFERENCES gateways (id),
    site       text COLLATE "C" NOT NULL REFERENCES sites (id),
    kind       text NOT NULL,
    metrics    text[] NOT NULL,
    interval_s integer NOT NULL,
    name_vi    text NOT NULL,
    name_en    text NOT NULL,
    lat        double precision,
    lon        double precision,
    attrs      jsonb NOT NULL DEFAULT '{}',
    active     boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sensors_site_idx ON sensors (site);
CREATE INDEX IF NOT EXISTS sensors_gateway_idx ON sensors (gateway);

CREATE TABLE IF NOT EXISTS metrics (
    code     text COLLATE "C" PRIMARY KEY,
    unit     text NOT NULL,
    name_vi  text NOT NULL,
    name_en  text NOT NULL,
    min      double precision NOT NULL,
    max      double precision NOT NULL,
    boolean  boolean NOT NULL DEFAULT false
);
