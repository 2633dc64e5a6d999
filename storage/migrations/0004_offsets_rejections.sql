-- Consumer offsets stored with the results (fenced by owner generation) and dead letters.
CREATE SEQUENCE IF NOT EXISTS consumer_generation_seq;

CREATE TABLE IF NOT EXISTS consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL CHECK (partition >= 0),
    next_offset bigint CHECK (next_offset >= 0),  -- first offset not yet processed; NULL: none yet
    generation  bigint NOT NULL,  -- owner generation; older generations may not commit
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

CREATE TABLE IF NOT EXISTS rejections (
    received_at  timestamptz NOT NULL,
    tenant       text NOT NULL,  -- '' when the topic names none
    device_id    text NOT NULL DEFAULT '',
    reason       text NOT NULL,  -- reason code: bad_json, non_finite, too_late...
    topic        text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    gateway_id   text NOT NULL DEFAULT '',
    payload      bytea NOT NULL DEFAULT '\x'::bytea,  -- excerpt of the original bytes
    payload_size integer NOT NULL DEFAULT 0  -- size of the original payload
);
SELECT create_hypertable('rejections', 'received_at', chunk_time_interval => interval '7 days',
                         create_default_indexes => false, if_not_exists => true);
CREATE INDEX IF NOT EXISTS rejections_tenant ON rejections (tenant, received_at DESC);
