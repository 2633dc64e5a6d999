"""Parameterised queries for dashboards and reports, returning polars DataFrames.

Every function reads schema ``public`` by default (city operations, services). Pass
``schema="tenant_api"`` on a pilot role's connection: the same queries then run on that pilot's
views and return its rows only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal

import polars as pl
import psycopg
from psycopg import sql

Schema = Literal["public", "tenant_api"]

_AVOIDED = """
WITH per_day AS (
    SELECT {group_col} AS {group_name}, d.day, sum(d.avoided_co2e_kg) / 1000.0 AS avoided_tco2e
    FROM {s}.results_daily d JOIN {s}.pilots p ON p.tenant = d.tenant
    WHERE d.width_s = %(width_s)s AND d.day < %(end)s
      AND (%(keys)s::text[] IS NULL OR {group_col} = ANY(%(keys)s::text[]))
    GROUP BY 1, 2
)
SELECT {group_name}, day, avoided_tco2e,
    sum(avoided_tco2e) OVER (PARTITION BY {group_name} ORDER BY day) AS cumulative_tco2e
FROM per_day
ORDER BY {group_name}, day
"""


async def avoided_per_day(
    conn: psycopg.AsyncConnection,
    *,
    by: Literal["pilot", "city"],
    start: date,
    end: date,
    width_s: int = 3600,
    keys: Sequence[str] | None = None,
    schema: Schema = "public",
) -> pl.DataFrame:
    """Avoided tCO2e per pilot (or city) per local day in ``[start, end)``, and cumulative.

    Days are the city's local days (``results_daily``). ``width_s`` picks one window width so the
    15 min and 1 h results of the same data are not added together. ``cumulative_tco2e`` counts
    from the first stored day, not from ``start``. Columns: tenant|city, day, avoided_tco2e,
    cumulative_tco2e.
    """
    group_col, group_name = ("d.tenant", "tenant") if by == "pilot" else ("p.city", "city")
    query = sql.SQL(_AVOIDED).format(
        s=sql.Identifier(schema),
        group_col=sql.SQL(group_col),
        group_name=sql.Identifier(group_name),
    )
    params = {"width_s": width_s, "end": end, "keys": list(keys) if keys is not None else None}
    df = await _frame(
        conn,
        query,
        params,
        {
            group_name: pl.String,
            "day": pl.Date,
            "avoided_tco2e": pl.Float64,
            "cumulative_tco2e": pl.Float64,
        },
    )
    return df.filter(pl.col("day") >= start)


_SERIES = """
SELECT w.bucket_start, sum(w.actual) AS actual, sum(w.baseline) AS baseline,
    sum(w.delta) AS delta, sum(w.avoided_co2e_kg) AS avoided_co2e_kg, min(w.coverage) AS coverage,
    count(*)::int AS devices
FROM {s}.window_results w
WHERE w.metric = %(metric)s AND w.width_s = %(width_s)s
  AND w.bucket_start >= %(start)s AND w.bucket_start < %(end)s
  AND (%(device_id)s::text IS NULL OR w.device_id = %(device_id)s)
  AND (%(tenant)s::text IS NULL OR w.tenant = %(tenant)s)
GROUP BY w.bucket_start
ORDER BY w.bucket_start
"""


async def baseline_vs_actual(
    conn: psycopg.AsyncConnection,
    *,
    metric: str,
    start: datetime,
    end: datetime,
    width_s: int = 3600,
    device_id: str | None = None,
    tenant: str | None = None,
    schema: Schema = "public",
) -> pl.DataFrame:
    """Baseline and actual per window for one device, or summed over a pilot's devices.

    Columns: bucket_start, actual, baseline, delta, avoided_co2e_kg, coverage (lowest of the
    devices), devices (how many devices the window sums).
    """
    if (device_id is None) == (tenant is None):
        msg = "give exactly one of device_id and tenant"
        raise ValueError(msg)
    params = {
        "metric": metric,
        "width_s": width_s,
        "start": start,
        "end": end,
        "device_id": device_id,
        "tenant": tenant,
    }
    return await _frame(
        conn,
        sql.SQL(_SERIES).format(s=sql.Identifier(schema)),
        params,
        {
            "bucket_start": pl.Datetime("us", "UTC"),
            "actual": pl.Float64,
            "baseline": pl.Float64,
            "delta": pl.Float64,
            "avoided_co2e_kg": pl.Float64,
            "coverage": pl.Float64,
            "devices": pl.Int32,
        },
    )


_HEALTH = """
WITH r AS (
    SELECT device_id, ts, ts - lag(ts) OVER (PARTITION BY device_id, metric ORDER BY ts) AS step
    FROM {s}.readings
    WHERE tenant = %(tenant)s AND ts >= %(since)s AND ts < %(until)s
), per AS (
    SELECT device_id, max(ts) AS last_seen, count(*) AS readings,
        count(*) FILTER (WHERE step > make_interval(secs => %(gap_s)s)) AS gaps,
        extract(epoch FROM max(step))::float8 AS max_step_s
    FROM r GROUP BY device_id
), rej AS (
    SELECT device_id, sum(n) AS rejected, jsonb_object_agg(reason, n) AS by_reason
    FROM (SELECT device_id, reason, count(*) AS n FROM {s}.rejections
          WHERE tenant = %(tenant)s AND received_at >= %(since)s AND received_at < %(until)s
          GROUP BY 1, 2) x
    GROUP BY device_id
), devs AS (
    SELECT id AS device_id FROM {s}.devices WHERE tenant = %(tenant)s
    UNION SELECT device_id FROM per
    UNION SELECT device_id FROM rej
)
SELECT d.device_id, per.last_seen, coalesce(per.readings, 0)::bigint AS readings,
    coalesce(per.gaps, 0)::bigint AS gaps, per.max_step_s,
    coalesce(rej.rejected, 0)::bigint AS rejected, coalesce(rej.by_reason, '{{}}')::text AS by_reason
FROM devs d LEFT JOIN per USING (device_id) LEFT JOIN rej USING (device_id)
ORDER BY d.device_id
"""


async def device_health(
    conn: psycopg.AsyncConnection,
    *,
    tenant: str,
    since: datetime,
    until: datetime,
    gap_s: float,
    schema: Schema = "public",
) -> pl.DataFrame:
    """Per device of a pilot in ``[since, until)``: last seen, readings, gaps, rejections.

    A gap is a step longer than ``gap_s`` between consecutive readings of one metric. Rejections
    are counted by reason (``by_reason`` is a JSON object; device "" holds rejections whose device
    was unknown). Registered devices that sent nothing are listed with ``last_seen`` null.
    """
    params = {"tenant": tenant, "since": since, "until": until, "gap_s": gap_s}
    return await _frame(
        conn,
        sql.SQL(_HEALTH).format(s=sql.Identifier(schema)),
        params,
        {
            "device_id": pl.String,
            "last_seen": pl.Datetime("us", "UTC"),
            "readings": pl.Int64,
            "gaps": pl.Int64,
            "max_step_s": pl.Float64,
            "rejected": pl.Int64,
            "by_reason": pl.String,
        },
    )


_LATEST = """
SELECT DISTINCT ON (device_id, metric) tenant, device_id, metric, ts, value, quality
FROM {s}.readings
WHERE ts >= %(since)s
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(devices)s::text[] IS NULL OR device_id = ANY(%(devices)s::text[]))
ORDER BY device_id, metric, ts DESC
"""


async def latest_readings(
    conn: psycopg.AsyncConnection,
    *,
    since: datetime,
    tenant: str | None = None,
    device_ids: Sequence[str] | None = None,
    schema: Schema = "public",
) -> pl.DataFrame:
    """The latest reading per device and metric since ``since`` (bounds the chunks scanned)."""
    params = {
        "since": since,
        "tenant": tenant,
        "devices": list(device_ids) if device_ids is not None else None,
    }
    return await _frame(
        conn,
        sql.SQL(_LATEST).format(s=sql.Identifier(schema)),
        params,
        {
            "tenant": pl.String,
            "device_id": pl.String,
            "metric": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "value": pl.Float64,
            "quality": pl.Int16,
        },
    )


_REGISTERS = """
SELECT m.device_id, m.metric, m.register_max
FROM {s}.device_metrics m JOIN {s}.devices d ON d.id = m.device_id
WHERE m.register_max IS NOT NULL AND (%(tenant)s::text IS NULL OR d.tenant = %(tenant)s)
ORDER BY m.device_id, m.metric
"""


async def register_maxima(
    conn: psycopg.AsyncConnection, *, tenant: str | None = None
) -> pl.DataFrame:
    """Known register maxima of counters (for rollover detection): device_id, metric, register_max."""
    return await _frame(
        conn,
        sql.SQL(_REGISTERS).format(s=sql.Identifier("public")),
        {"tenant": tenant},
        {"device_id": pl.String, "metric": pl.String, "register_max": pl.Float64},
    )


_LAG = """
SELECT u.topic, u.partition, o.next_offset, u.end_offset,
    greatest(u.end_offset - coalesce(o.next_offset, 0), 0) AS lag
FROM unnest(%(topics)s::text[], %(partitions)s::int[], %(ends)s::bigint[])
    AS u(topic, partition, end_offset)
LEFT JOIN consumer_offsets o
    ON o.group_id = %(group)s AND o.topic = u.topic AND o.partition = u.partition
ORDER BY u.topic, u.partition
"""


async def consumer_lag(
    conn: psycopg.AsyncConnection, *, group: str, end_offsets: Mapping[tuple[str, int], int]
) -> pl.DataFrame:
    """Lag per partition: Kafka end offset (given, e.g. from the admin client) minus stored offset.

    A partition with nothing stored counts its whole log as lag. Columns: topic, partition,
    next_offset (null when none), end_offset, lag.
    """
    keys = sorted(end_offsets)
    params = {
        "group": group,
        "topics": [t for t, _ in keys],
        "partitions": [p for _, p in keys],
        "ends": [end_offsets[k] for k in keys],
    }
    return await _frame(
        conn,
        sql.SQL(_LAG),
        params,
        {
            "topic": pl.String,
            "partition": pl.Int32,
            "next_offset": pl.Int64,
            "end_offset": pl.Int64,
            "lag": pl.Int64,
        },
    )


async def _frame(
    conn: psycopg.AsyncConnection,
    query: sql.Composed | sql.SQL,
    params: Mapping[str, Any],
    schema: Mapping[str, Any],
) -> pl.DataFrame:
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    return pl.DataFrame(rows, schema=dict(schema), orient="row")
