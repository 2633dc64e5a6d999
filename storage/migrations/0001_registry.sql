-- Registry: cities, pilots, devices and their metrics, interventions.
-- Cities and pilots are seeded from pilotstream/registry.toml by storage/registry_sync.py.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE IF NOT EXISTS cities (
    id      text PRIMARY KEY,
    name    text NOT NULL,
    tz      text NOT NULL,            -- IANA zone: daily figures use its local midnight
    country text NOT NULL CHECK (country ~ '^[A-Z]{2}$')
);

CREATE TABLE IF NOT EXISTS pilots (
    tenant      text PRIMARY KEY,     -- tenant id = MQTT user = topic prefix
    city        text NOT NULL REFERENCES cities (id),
    lot         text NOT NULL CHECK (lot IN ('energy', 'mobility')),
    description text NOT NULL DEFAULT '',
    params      jsonb NOT NULL DEFAULT '{}'::jsonb  -- method parameters (mode shares, trip km...)
);

CREATE TABLE IF NOT EXISTS devices (
    id           text PRIMARY KEY,
    tenant       text NOT NULL REFERENCES pilots (tenant),
    kind         text NOT NULL,       -- e.g. electricity_meter, bike_counter, weather_station
    latitude     float8 CHECK (latitude BETWEEN -90 AND 90),
    longitude    float8 CHECK (longitude BETWEEN -180 AND 180),
    location     text NOT NULL DEFAULT '',
    installed_on date,
    removed_on   date CHECK (removed_on IS NULL OR removed_on >= installed_on)
);
CREATE INDEX IF NOT EXISTS devices_tenant_idx ON devices (tenant);

CREATE TABLE IF NOT EXISTS device_metrics (
    device_id    text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    metric       text NOT NULL,
    unit         text NOT NULL,       -- canonical unit
    kind         text NOT NULL CHECK (kind IN ('counter', 'gauge', 'delta')),
    register_max float8 CHECK (register_max > 0),  -- counters: value at which the register rolls over
    PRIMARY KEY (device_id, metric)
);

CREATE TABLE IF NOT EXISTS interventions (
    id        bigserial PRIMARY KEY,
    tenant    text NOT NULL REFERENCES pilots (tenant),
    device_id text REFERENCES devices (id),  -- NULL: the whole pilot
    kind      text NOT NULL CHECK (kind IN ('start', 'stop', 'device_swap', 'non_routine')),
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz CHECK (ends_at IS NULL OR ends_at >= starts_at),
    detail    text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS interventions_tenant_idx ON interventions (tenant, starts_at);
