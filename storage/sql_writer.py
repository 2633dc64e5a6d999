"""SQL statements of the writer (kept apart so writer.py reads as control flow)."""

from __future__ import annotations

# Per-connection staging tables: not WAL-logged, emptied at every commit.
STAGE_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS _stage_readings (
    ts timestamptz, value float8, seq bigint, received_at timestamptz, quality smallint,
    tenant text, device_id text, metric text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _stage_windows (
    bucket_start timestamptz, width_s integer, actual float8, baseline float8, delta float8,
    factor float8, avoided_co2e_kg float8, coverage float8,
    tenant text, device_id text, metric text, baseline_model_id text, factor_id text
) ON COMMIT DELETE ROWS;
"""

COPY_READINGS = "COPY _stage_readings FROM STDIN (FORMAT binary)"
COPY_READINGS_DIRECT = (  # same buffer, same column order as the stage table
    "COPY readings (ts, value, seq, received_at, quality, tenant, device_id, metric) "
    "FROM STDIN (FORMAT binary)"
)
COPY_WINDOWS = "COPY _stage_windows FROM STDIN (FORMAT binary)"

INSERT_READINGS = """
INSERT INTO readings (ts, tenant, device_id, metric, value, seq, received_at, quality)
SELECT ts, tenant, device_id, metric, value, seq, received_at, quality FROM _stage_readings
ON CONFLICT (device_id, metric, ts) DO NOTHING
"""

# Revision and updated_at move only when a value differs; RETURNING lists inserted and revised
# rows (xmax = 0 marks an insert), unchanged ones are not returned.
UPSERT_WINDOWS = """
INSERT INTO window_results AS w (bucket_start, width_s, tenant, device_id, metric, actual,
    baseline, delta, factor, avoided_co2e_kg, coverage, baseline_model_id, factor_id)
SELECT bucket_start, width_s, tenant, device_id, metric, actual, baseline, delta, factor,
    avoided_co2e_kg, coverage, baseline_model_id, factor_id
FROM _stage_windows
ON CONFLICT (device_id, metric, width_s, bucket_start) DO UPDATE SET
    tenant = EXCLUDED.tenant, actual = EXCLUDED.actual, baseline = EXCLUDED.baseline,
    delta = EXCLUDED.delta, factor = EXCLUDED.factor, avoided_co2e_kg = EXCLUDED.avoided_co2e_kg,
    coverage = EXCLUDED.coverage, baseline_model_id = EXCLUDED.baseline_model_id,
    factor_id = EXCLUDED.factor_id, revision = w.revision + 1, updated_at = now()
WHERE (w.tenant, w.actual, w.baseline, w.delta, w.factor, w.avoided_co2e_kg, w.coverage,
       w.baseline_model_id, w.factor_id)
    IS DISTINCT FROM
      (EXCLUDED.tenant, EXCLUDED.actual, EXCLUDED.baseline, EXCLUDED.delta, EXCLUDED.factor,
       EXCLUDED.avoided_co2e_kg, EXCLUDED.coverage, EXCLUDED.baseline_model_id,
       EXCLUDED.factor_id)
RETURNING device_id, metric, width_s,
    (extract(epoch FROM bucket_start) * 1000)::bigint AS bucket_start_ms, revision,
    (xmax = 0) AS inserted
"""

# Recompute the local days (city time zone; UTC for a tenant missing from the registry) touched
# by the staged windows, from the stored window results.
ROLLUP_DAILY = """
WITH days AS (
    SELECT DISTINCT s.device_id, s.metric, s.width_s, z.tz,
        (s.bucket_start AT TIME ZONE z.tz)::date AS day
    FROM _stage_windows s
    LEFT JOIN pilots p ON p.tenant = s.tenant
    LEFT JOIN cities c ON c.id = p.city
    CROSS JOIN LATERAL (SELECT coalesce(c.tz, 'UTC') AS tz) z
)
INSERT INTO results_daily AS d (day, width_s, tenant, device_id, metric, actual, baseline, delta,
    avoided_co2e_kg, windows, coverage, updated_at)
SELECT k.day, k.width_s, max(w.tenant), k.device_id, k.metric, sum(w.actual), sum(w.baseline),
    sum(w.delta), sum(w.avoided_co2e_kg), count(*), avg(w.coverage), now()
FROM days k
JOIN window_results w ON w.device_id = k.device_id AND w.metric = k.metric
    AND w.width_s = k.width_s
    AND w.bucket_start >= (k.day::timestamp AT TIME ZONE k.tz)
    AND w.bucket_start < ((k.day + 1)::timestamp AT TIME ZONE k.tz)
GROUP BY k.day, k.width_s, k.device_id, k.metric
ON CONFLICT (device_id, metric, width_s, day) DO UPDATE SET
    tenant = EXCLUDED.tenant, actual = EXCLUDED.actual, baseline = EXCLUDED.baseline,
    delta = EXCLUDED.delta, avoided_co2e_kg = EXCLUDED.avoided_co2e_kg,
    windows = EXCLUDED.windows, coverage = EXCLUDED.coverage, updated_at = now()
"""

INSERT_REJECTIONS = """
INSERT INTO rejections (received_at, tenant, device_id, reason, topic, detail, gateway_id,
    payload, payload_size, msg_id)
SELECT to_timestamp(ms / 1000.0), tenant, device_id, reason, topic, detail, gateway_id,
    payload, payload_size, msg_id
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
    %s::text[], %s::bytea[], %s::int[], %s::text[])
    AS u(ms, tenant, device_id, reason, topic, detail, gateway_id, payload, payload_size, msg_id)
"""
