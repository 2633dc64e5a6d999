"""Hourly baseline fits: 1,000 devices' year of hourly data (target < 60 s on this machine).

Simulated office buildings (time-of-week occupancy, heating and cooling slopes, noise) are fitted
with the CalTRACK-style hourly model (12 monthly models per device, occupancy detection, piecewise
temperature segments) in one call; the time covers fitting and fit metrics, not data generation.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl

from bench.summary import progress, rss_mb, summary

T0 = 1_672_531_200_000  # 2023-01-01T00:00Z
HOUR_MS = 3_600_000


def _buildings(devices: int, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    hours = 365 * 24
    h = np.arange(hours)
    temp = 10 - 11 * np.cos(2 * np.pi * h / hours) + 4 * np.sin(2 * np.pi * (h % 24 - 9) / 24)
    temp = temp + rng.normal(0, 1.5, hours)
    local_hour = (h + 1) % 24
    occupied = (local_hour >= 8) & (local_hour < 19) & (((h + 1) // 24 + 6) % 7 < 5)
    size = rng.uniform(0.5, 3.0, (devices, 1))
    usage = (
        size
        * (
            20
            + 30 * occupied
            + 2 * np.maximum(14 - temp, 0) * (1 + occupied)
            + 3 * np.maximum(temp - 22, 0) * occupied
        )
        + rng.normal(0, 3, (devices, hours)) * size
    )
    return pl.DataFrame(
        {
            "device_id": np.repeat([f"b{i:05d}" for i in range(devices)], hours),
            "ts_ms": np.tile(T0 + h.astype(np.int64) * HOUR_MS, devices),
            "usage": usage.reshape(-1),
            "temperature": np.tile(temp, devices),
        }
    )


def run(quick: bool) -> dict[str, Any]:
    """Run the benchmark; ``quick`` fits 100 devices instead of 1,000."""
    from processors.baselines import fit_hourly

    devices = 100 if quick else 1_000
    progress(f"simulating {devices} buildings x 8760 hours")
    frame = _buildings(devices)
    progress("fitting")
    started = time.perf_counter()
    models = fit_hourly(
        frame,
        tz="Europe/Paris",
        metric="energy.active.import",
        period=(T0, T0 + 365 * 24 * HOUR_MS),
    )
    seconds = time.perf_counter() - started
    usable = sum(m.usable for m in models)
    cv = [m.metrics.cvrmse for m in models if m.metrics is not None]
    progress(f"{len(models)} models in {seconds:.1f} s, {usable} meet ASHRAE G14")
    return summary(
        "baselines",
        {"devices": devices, "hours_per_device": 8760, "method": "hourly", "quick": quick},
        {
            "seconds": round(seconds, 2),
            "fits_per_s": round(len(models) / seconds, 1),
            "hours_per_s": round(frame.height / seconds),
            "usable_models": usable,
            "median_cvrmse_pct": round(float(np.median(cv)), 2),
            "rss_mb": rss_mb(),
            "target_seconds_for_1000": 60,
        },
    )
