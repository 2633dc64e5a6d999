"""The daily rollup the writer maintains equals the days aggregated from the stored window
results, across time zones, restatements, unchanged resends and several batches."""

from __future__ import annotations

import numpy as np
import polars as pl
import psycopg
import pytest

from storage.offsets import claim_partitions
from storage.writer import Writer

from .data import HOUR_MS, ms, utc, windows

pytestmark = pytest.mark.integration

# the local days (city time zone, UTC for an unknown pilot) aggregated from window_results
_RECOMPUTED = """
SELECT (w.bucket_start AT TIME ZONE coalesce(c.tz, 'UTC'))::date AS day, w.width_s, w.device_id,
    w.metric, count(*)::int, sum(w.actual), sum(w.baseline), sum(w.delta),
    sum(w.avoided_co2e_kg), avg(w.coverage)
FROM window_results w LEFT JOIN pilots p ON p.tenant = w.tenant LEFT JOIN cities c ON c.id = p.city
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""
_STORED = """
SELECT day, width_s, device_id, metric, windows, actual, baseline, delta, avoided_co2e_kg, coverage
FROM results_daily ORDER BY 1, 2, 3, 4
"""


def _batch(rng: np.random.Generator, starts: np.ndarray, tenant: str, device: str) -> pl.DataFrame:
    actual = rng.uniform(0, 10, len(starts)).round(3)
    return windows(
        tenant=tenant,
        device=device,
        starts_ms=starts.tolist(),
        actual=actual.tolist(),
        baseline=(actual + rng.uniform(-1, 3, len(starts))).round(3).tolist(),
    ).with_columns(coverage=pl.Series(rng.uniform(0.5, 1.0, len(starts)).round(3)))


async def test_daily_rollup_equals_the_stored_windows(aconn: psycopg.AsyncConnection) -> None:
    gen = (await claim_partitions(aconn, group="g", topic="t", partitions=[0])).generation
    rng = np.random.default_rng(7)
    t0 = ms(utc(2026, 3, 9, 18, 0))  # evening in Paris and UTC: local days split differently
    devices = [("paris-energy-1", "m1"), ("paris-energy-1", "m2"), ("unknown-pilot", "u1")]
    dsn = f"{aconn.info.dsn} password={aconn.info.password or ''}"
    async with Writer(dsn=dsn) as w:
        for step in range(6):
            parts = []
            for tenant, device in devices:
                new = t0 + (step * 8 + np.arange(8)) * HOUR_MS  # 8 new hours per batch
                old = t0 + rng.choice(step * 8 + 8, size=3, replace=False) * HOUR_MS
                parts.append(_batch(rng, np.unique(np.concatenate([new, old])), tenant, device))
            batch = pl.concat(parts)
            await w.commit_batch(
                readings=None, windows=batch, offsets={}, group="g", generation=gen
            )
            # the same windows again: nothing changes, the rollup must not move
            await w.commit_batch(
                readings=None, windows=batch, offsets={}, group="g", generation=gen
            )
    recomputed = await (await aconn.execute(_RECOMPUTED)).fetchall()
    stored = await (await aconn.execute(_STORED)).fetchall()
    assert len(stored) == len(recomputed) > 6
    for got, want in zip(stored, recomputed, strict=True):
        assert got[:5] == want[:5]  # day, width, device, metric, window count
        np.testing.assert_allclose(got[5:], want[5:], rtol=1e-9, atol=1e-9)
