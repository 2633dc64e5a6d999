-- Canonical readings. Chunk interval: 1 day. At ~2 million readings a day across all pilots a day's
-- chunk with its two indexes stays well under 1 GB, so the hot chunk's indexes fit in memory, and
-- retention (drop_chunks) works at day granularity. Ids use the "C" collation: byte order, fast
-- to compare in the indexes whatever the cluster locale.
CREATE TABLE IF NOT EXISTS readings (
    ts          timestamptz NOT NULL,  -- event time, UTC
    tenant      text COLLATE "C" NOT NULL,  -- pilot id
    device_id   text COLLATE "C" NOT NULL,
    metric      text COLLATE "C" NOT NULL,
    value       float8 NOT NULL,       -- canonical unit of the metric
    seq         bigint NOT NULL DEFAULT -1,  -- per-device sequence number, -1 when none
    received_at timestamptz NOT NULL,  -- when the gateway received it
    quality     smallint NOT NULL DEFAULT 0  -- bit flags set by the processors
);
SELECT create_hypertable('readings', 'ts', chunk_time_interval => interval '1 day',
                         create_default_indexes => false, if_not_exists => true);
-- The dedup key; TimescaleDB requires the time column in unique indexes.
CREATE UNIQUE INDEX IF NOT EXISTS readings_key ON readings (device_id, metric, ts);
CREATE INDEX IF NOT EXISTS readings_tenant_ts ON readings (tenant, ts DESC);
