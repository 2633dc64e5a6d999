"""Database side of baselines and reports: plain SQL on the storage issue's tables.

WIRING: this is the one place the M&V commands touch TimescaleDB. It reads ``window_results``
(hourly), ``interventions``, ``baselines``, ``emission_factors`` and ``pilots`` with plain SQL on
a psycopg (sync) connection passed in; when ``storage.queries`` grows the same reads, swap the
bodies here and nothing else changes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from processors.baselines.exclusions import PERIOD_SCHEMA
from processors.baselines.fit import HistoryProvider
from processors.baselines.model import FittedModel
from processors.report.data import WINDOW_COLUMNS

HOUR_S = 3600


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _frame(conn: Any, query: str, params: dict[str, Any], schema: dict[str, Any]) -> pl.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    return pl.DataFrame(rows, schema=schema, orient="row")


def window_results(conn: Any, tenants: Sequence[str], start_ms: int, end_ms: int) -> pl.DataFrame:
    """Hourly window results of ``tenants`` in ``[start_ms, end_ms)`` (columns WINDOW_COLUMNS)."""
    query = """
        SELECT (extract(epoch FROM bucket_start) * 1000)::bigint, width_s, device_id, metric,
               actual, baseline, delta, factor, avoided_co2e_kg, coverage, baseline_model_id,
               factor_id
        FROM window_results
        WHERE tenant = ANY(%(tenants)s) AND width_s = %(width)s
          AND bucket_start >= %(start)s AND bucket_start < %(end)s
        ORDER BY device_id, metric, bucket_start"""
    schema: dict[str, type[pl.DataType]] = dict.fromkeys(WINDOW_COLUMNS, pl.Float64)
    schema.update(
        {
            "bucket_start_ms": pl.Int64,
            "width_s": pl.Int64,
            "device_id": pl.String,
            "metric": pl.String,
            "baseline_model_id": pl.String,
            "factor_id": pl.String,
        }
    )
    params = {"tenants": list(tenants), "width": HOUR_S, "start": _ts(start_ms), "end": _ts(end_ms)}
    return _frame(conn, query, params, schema)


def pilot_series(conn: Any, tenant: str) -> list[tuple[str, str]]:
    """(device_id, metric) pairs with hourly results for a pilot."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT device_id, metric FROM window_results"
            " WHERE tenant = %s AND width_s = %s ORDER BY 1, 2",
            (tenant, HOUR_S),
        )
        return [(str(d), str(m)) for d, m in cur.fetchall()]


def history_provider(conn: Any, tenant: str) -> HistoryProvider:
    """Hourly usage of a pilot's devices plus the city's mean outdoor temperature per hour."""

    def history(device_ids: Sequence[str], metric: str, start_ms: int, end_ms: int) -> pl.DataFrame:
        query = """
            WITH temp AS (
                SELECT w.bucket_start, avg(w.actual) AS temperature
                FROM window_results w JOIN pilots p ON p.tenant = w.tenant
                WHERE w.metric = 'weather.temperature' AND w.width_s = %(width)s
                  AND p.city = (SELECT city FROM pilots WHERE tenant = %(tenant)s)
                  AND w.bucket_start >= %(start)s AND w.bucket_start < %(end)s
                GROUP BY 1)
            SELECT w.device_id, (extract(epoch FROM w.bucket_start) * 1000)::bigint, w.actual,
                   t.temperature
            FROM window_results w LEFT JOIN temp t ON t.bucket_start = w.bucket_start
            WHERE w.tenant = %(tenant)s AND w.device_id = ANY(%(ids)s) AND w.metric = %(metric)s
              AND w.width_s = %(width)s AND w.bucket_start >= %(start)s AND w.bucket_start < %(end)s
            ORDER BY 1, 2"""
        params = {
            "tenant": tenant,
            "ids": list(device_ids),
            "metric": metric,
            "width": HOUR_S,
            "start": _ts(start_ms),
            "end": _ts(end_ms),
        }
        schema = {
            "device_id": pl.String,
            "ts_ms": pl.Int64,
            "usage": pl.Float64,
            "temperature": pl.Float64,
        }
        return _frame(conn, query, params, schema)

    return history


def excluded_periods(conn: Any, tenants: Sequence[str]) -> pl.DataFrame:
    """Device swaps and non-routine events of ``tenants`` (open-ended ones run to now)."""
    query = """
        SELECT device_id, (extract(epoch FROM starts_at) * 1000)::bigint,
               (extract(epoch FROM coalesce(ends_at, now())) * 1000)::bigint, kind
        FROM interventions
        WHERE tenant = ANY(%(tenants)s) AND kind IN ('device_swap', 'non_routine')
        ORDER BY starts_at"""
    return _frame(conn, query, {"tenants": list(tenants)}, dict(PERIOD_SCHEMA))


def intervention_start(conn: Any, tenant: str) -> int | None:
    """UTC ms of the pilot's first ``start`` intervention (the end of its baseline period)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (extract(epoch FROM min(starts_at)) * 1000)::bigint FROM interventions"
            " WHERE tenant = %s AND kind = 'start'",
            (tenant,),
        )
        row = cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])


def store_models(conn: Any, tenant: str, models: Sequence[FittedModel]) -> int:
    """Insert fitted models into ``baselines`` (a model id is content-derived: re-runs are no-ops)."""
    rows = []
    for m in models:
        d = m.to_dict()
        extra = {"sufficient": d["sufficient"], "reasons": d["reasons"], "excluded": d["excluded"]}
        rows.append(
            (
                m.model_id,
                tenant,
                m.device_id,
                m.metric,
                m.method,
                json.dumps(m.params),
                json.dumps({**(d["metrics"] or {}), **extra}),
                _ts(m.period_start_ms),
                _ts(m.period_end_ms),
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO baselines (model_id, tenant, device_id, metric, method, parameters,"
            " fit_metrics, period_start, period_end) VALUES (%s, %s, %s, %s, %s, %s::jsonb,"
            " %s::jsonb, %s, %s) ON CONFLICT (model_id) DO NOTHING",
            rows,
        )
    return len(rows)


def load_models(conn: Any, tenants: Sequence[str]) -> list[FittedModel]:
    """The latest model per (device, metric) of ``tenants``."""
    query = """
        SELECT DISTINCT ON (device_id, metric) model_id, device_id, metric, method, parameters,
               fit_metrics, (extract(epoch FROM period_start) * 1000)::bigint,
               (extract(epoch FROM period_end) * 1000)::bigint
        FROM baselines WHERE tenant = ANY(%(tenants)s)
        ORDER BY device_id, metric, created_at DESC"""
    with conn.cursor() as cur:
        cur.execute(query, {"tenants": list(tenants)})
        rows = cur.fetchall()
    out = []
    for model_id, device, metric, method, params, raw_fit, start, end in rows:
        fit = dict(raw_fit or {})
        extra = {k: fit.pop(k, None) for k in ("sufficient", "reasons", "excluded")}
        out.append(
            FittedModel.from_dict(
                {
                    "model_id": model_id,
                    "method": method,
                    "device_id": device,
                    "metric": metric,
                    "period_start_ms": start,
                    "period_end_ms": end,
                    "params": params,
                    "metrics": fit or None,
                    "sufficient": bool(extra["sufficient"]),
                    "reasons": extra["reasons"] or [],
                    "excluded": extra["excluded"] or [],
                }
            )
        )
    return out


def factor_rows(conn: Any, factor_ids: Sequence[str]) -> pl.DataFrame:
    """Rows of ``emission_factors`` for the ids used (mixes like ``a*0.35+b*0.65`` are split)."""
    ids = sorted({part.split("*")[0] for fid in factor_ids for part in fid.split("+") if part})
    query = """
        SELECT id, scope, unit, value, basis, source, year FROM emission_factors
        WHERE id = ANY(%(ids)s) ORDER BY id"""
    schema = {
        "factor_id": pl.String,
        "scope": pl.String,
        "unit": pl.String,
        "value": pl.Float64,
        "basis": pl.String,
        "source": pl.String,
        "year": pl.Int64,
    }
    return _frame(conn, query, {"ids": ids}, schema)
