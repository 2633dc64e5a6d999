"""StoredBaselines on a real database: intervention split, automatic time-of-week fit, storage."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import psycopg
import pytest

from pilotstream.registry import load_registry
from processors.baseline_provider import StoredBaselines

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; Paris is UTC+1 then
START_MS = int(START.timestamp() * 1000)
HOUR_MS = 3_600_000

_HISTORY = """
INSERT INTO window_results (bucket_start, width_s, tenant, device_id, metric, actual, baseline,
    delta, factor, avoided_co2e_kg, coverage, baseline_model_id, factor_id)
SELECT t, 3600, 'paris-energy-1', 'm1', 'energy.active.import',
    1 + 2 * (extract(hour FROM t AT TIME ZONE 'Europe/Paris') BETWEEN 8 AND 17)::int,
    0, 0, 0, 0, 1, '', ''
FROM generate_series(%(start)s - interval '35 days', %(start)s - interval '1 hour',
    interval '1 hour') AS t
"""


async def test_fits_stores_and_reuses_a_time_of_week_baseline(proc_dsn: str) -> None:
    with psycopg.connect(proc_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO interventions (tenant, kind, starts_at) VALUES ('paris-energy-1', 'start', %s)",
            (START,),
        )
        conn.execute(_HISTORY, {"start": START})
    windows = pl.DataFrame(
        {
            "tenant": ["paris-energy-1"] * 4,
            "device_id": ["m1", "m1", "m1", "other"],
            "metric": ["energy.active.import"] * 4,
            "width_s": [3600, 900, 3600, 3600],
            "bucket_start_ms": [
                START_MS + 9 * HOUR_MS,  # Monday 10:00 Paris: occupied hours
                START_MS + 2 * HOUR_MS,  # Monday 03:00 Paris, a quarter of an hour
                START_MS - 5 * HOUR_MS,  # before the intervention
                START_MS + 9 * HOUR_MS,  # a device without history
            ],
            "needs_baseline": [True] * 4,
        }
    )
    async with await psycopg.AsyncConnection.connect(proc_dsn, autocommit=True) as conn:
        provider = StoredBaselines(conn=conn, registry=load_registry(), baseline_days=35)
        out = await provider.annotate(windows)
        assert out["reporting"].to_list() == [True, True, False, True]
        assert out["baseline"].to_list()[:2] == pytest.approx([3.0, 0.25])
        assert out["baseline"].to_list()[2:] == [None, None]
        model_id = out["baseline_model_id"][0]
        assert model_id.startswith("tow:m1:")
        again = await StoredBaselines(conn=conn, registry=load_registry()).annotate(windows)
        assert again["baseline_model_id"][0] == model_id  # read back from the table, not refitted
        cur = await conn.execute("SELECT count(*), min(method) FROM baselines")
        assert await cur.fetchone() == (1, "tow")


async def test_a_fit_uses_every_window_of_a_poll_not_yet_committed(proc_dsn: str) -> None:
    # a backlog poll closes the whole baseline period and the first reporting hours at once: none
    # of it is in the database yet (its commit follows), so the fit must take all of it from the poll
    with psycopg.connect(proc_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO interventions (tenant, kind, starts_at) VALUES ('paris-energy-1', 'start', %s)",
            (START,),
        )
    hours = list(range(-35 * 24, 6))
    windows = pl.DataFrame(
        {
            "tenant": "paris-energy-1",
            "device_id": "m2",
            "metric": "energy.active.import",
            "width_s": 3600,
            "bucket_start_ms": [START_MS + h * HOUR_MS for h in hours],
            "actual": [1.0 + (h % 24 >= 8) * 2.0 for h in hours],
            "needs_baseline": True,
        }
    )
    async with await psycopg.AsyncConnection.connect(proc_dsn, autocommit=True) as conn:
        provider = StoredBaselines(conn=conn, registry=load_registry(), baseline_days=35)
        out = await provider.annotate(windows)
        assert out.filter(pl.col("reporting"))["baseline_model_id"].str.starts_with("tow:m2:").all()
        cur = await conn.execute("SELECT fit_metrics->>'n' FROM baselines WHERE device_id = 'm2'")
        assert await cur.fetchone() == (
            str(35 * 24),
        )  # every hour of the period, not the last 14 days
