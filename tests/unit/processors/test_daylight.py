"""The darkness-driven lighting baseline: fit, robustness to spikes, prediction of any window."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from processors.baselines.daylight import dark_share, fit_daylight, predict_daylight

HOUR_MS = 3_600_000
START = 1_768_780_800_000  # 2026-01-19T00:00Z
LAT, LON, TZ = 58.97, 5.73, "Europe/Oslo"  # Stavanger
POWER = {d: 1.0 + d for d in range(2)}  # kW per device at full darkness


def _hours(start: int, days: int) -> np.ndarray:
    return start + np.arange(days * 24) * HOUR_MS


def _usage(ts: np.ndarray, kw: float) -> np.ndarray:
    out: np.ndarray = kw * dark_share(ts, np.full(len(ts), 3600), LAT, LON)
    return out


def test_darkness_follows_the_season() -> None:
    jan = dark_share(_hours(START, 1), np.full(24, 3600), LAT, LON).sum()
    mar = dark_share(_hours(START + 42 * 24 * HOUR_MS, 1), np.full(24, 3600), LAT, LON).sum()
    assert 16 < jan < 18.5  # mid-January Stavanger: about 17 dark hours
    assert 12 < mar < 14  # early March: about 13
    assert mar < jan - 3


def test_a_fit_in_winter_predicts_the_shorter_nights_of_spring_despite_spikes() -> None:
    ts = _hours(START, 28)
    frames = []
    for d, kw in POWER.items():
        usage = _usage(ts, kw)
        usage[[100, 300, 500]] += 12.0  # meter spikes, in daylight or not
        frames.append(pl.DataFrame({"device_id": f"cab-{d}", "ts_ms": ts, "usage": usage}))
    models = fit_daylight(
        pl.concat(frames),
        metric="energy.lighting",
        tz=TZ,
        period=(START, START + 28 * 24 * HOUR_MS),
        lat=LAT,
        lon=LON,
    )
    assert [m.usable for m in models] == [True, True]  # spikes left out of the fit metrics
    later = _hours(START + 28 * 24 * HOUR_MS, 14)
    windows = pl.DataFrame(
        {
            "device_id": ["cab-1"] * len(later) + ["cab-0"] * len(later) + ["other"],
            "bucket_start_ms": np.r_[later, later, later[:1]],
            "width_s": 3600,
        }
    )
    out = predict_daylight(models, windows, tz=TZ)
    for d, kw in POWER.items():
        got = out.filter(pl.col("device_id") == f"cab-{d}")["baseline"].sum()
        assert got == pytest.approx(_usage(later, kw).sum(), rel=1e-6)
    assert out["baseline"][-1] is None  # no model, no baseline
    quarter = predict_daylight(
        models,
        pl.DataFrame(
            {
                "device_id": ["cab-0"] * 4,
                "bucket_start_ms": later[0] + np.arange(4) * 900_000,
                "width_s": 900,
            }
        ),
        tz=TZ,
    )
    assert quarter["baseline"].sum() == pytest.approx(out["baseline"][len(later)], rel=1e-6)
