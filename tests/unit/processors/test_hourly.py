"""Hourly time-of-week and temperature model, time-of-week counts, fitting through a provider."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from processors.baselines import (
    FittedModel,
    baseline_period,
    fit_devices,
    fit_hourly,
    fit_tow,
    predict_hourly,
    predict_tow,
    predict_windows,
)
from processors.baselines.hourly import EDGES_C, segments

from .simdata import DAY_MS, HOUR_MS, T0, building, provider

TZ = "Europe/Paris"
YEAR1 = (T0, T0 + 365 * DAY_MS)


@pytest.fixture(scope="module")
def buildings() -> tuple[pl.DataFrame, float]:
    return building(3, days=730, reduction=0.1)


def test_segments_sum_to_the_temperature() -> None:
    t = np.array([-10.0, 0.0, 10.0, 20.0, 40.0])
    s = segments(t)
    np.testing.assert_allclose(s.sum(axis=1), t)
    assert s.shape == (5, len(EDGES_C) + 1)


def test_hourly_avoided_energy_within_3_percent(buildings: tuple[pl.DataFrame, float]) -> None:
    frame, true_avoided = buildings
    base = frame.filter(pl.col("ts_ms") < YEAR1[1])
    models = fit_hourly(base, tz=TZ, metric="energy.active.import", period=YEAR1)
    assert all(m.sufficient and m.usable for m in models), [m.reasons for m in models]
    report = frame.filter(pl.col("ts_ms") >= YEAR1[1])
    pred = predict_hourly(models, report.select("device_id", "ts_ms", "temperature"), tz=TZ)
    avoided = float((pred["baseline"] - report["usage"]).sum())
    assert abs(avoided - true_avoided) / true_avoided < 0.03


def test_occupancy_found_on_working_hours(buildings: tuple[pl.DataFrame, float]) -> None:
    frame, _ = buildings
    m = fit_hourly(frame.filter(pl.col("ts_ms") < YEAR1[1]), tz=TZ, metric="m", period=YEAR1)[0]
    occ = np.array(m.params["occupied"])  # month x hour of week, local time
    tow = np.arange(168)
    working = ((tow % 24) >= 8) & ((tow % 24) < 19) & (tow // 24 < 5)
    assert (occ[0] == working).mean() > 0.95


def test_hourly_sufficiency_and_round_trip(buildings: tuple[pl.DataFrame, float]) -> None:
    frame, _ = buildings
    short = frame.filter((pl.col("ts_ms") < T0 + 100 * DAY_MS) & (pl.col("device_id") == "b000"))
    m = fit_hourly(short, tz=TZ, metric="m", period=(T0, T0 + 100 * DAY_MS))[0]
    assert set(m.reasons) == {"baseline_too_short"}
    holes = frame.filter(
        (pl.col("device_id") == "b000")
        & (pl.col("ts_ms") < YEAR1[1])
        & ~((pl.col("ts_ms") >= T0 + 40 * DAY_MS) & (pl.col("ts_ms") < T0 + 50 * DAY_MS))
    )
    m2 = fit_hourly(holes, tz=TZ, metric="m", period=YEAR1)[0]
    assert m2.reasons == ("month_coverage_low",)
    assert FittedModel.from_dict(m2.to_dict()) == m2


def test_fit_devices_through_a_provider_auto_and_exclusions(
    buildings: tuple[pl.DataFrame, float],
) -> None:
    frame, _ = buildings
    swap = pl.DataFrame(
        {
            "device_id": ["b001"],
            "start_ms": [T0 + 10 * DAY_MS],
            "end_ms": [T0 + 12 * DAY_MS],
            "kind": ["device_swap"],
        }
    )
    seen = []
    models = fit_devices(
        provider(frame),
        device_ids=["b000", "b001", "b002"],
        metric="m",
        tz=TZ,
        period=baseline_period(YEAR1[1]),
        method="auto",
        periods=swap,
        progress=lambda done, total: seen.append((done, total)),
        block=2,
    )
    assert [m.method for m in models] == ["hourly"] * 3
    assert seen == [(2, 3), (3, 3)]
    assert models[1].excluded == ((T0 + 10 * DAY_MS, T0 + 12 * DAY_MS),)
    assert models[1].metrics is not None
    assert models[1].metrics.n == 365 * 24 - 48
    daily = fit_devices(
        provider(frame), device_ids=["b000"], metric="m", tz=TZ, period=YEAR1, method="daily"
    )
    assert daily[0].method == "daily"
    assert daily[0].usable


def test_mobility_counts_avoided_within_5_percent() -> None:
    rng = np.random.default_rng(21)
    weeks = 16
    h = np.arange(weeks * 7 * 24)
    ts = T0 + h.astype(np.int64) * HOUR_MS
    hour = (h + 1) % 24
    rate = 20 + 80 * np.exp(-((hour - 8) ** 2) / 4) + 60 * np.exp(-((hour - 17) ** 2) / 4)
    after = h >= 8 * 7 * 24
    cars = rng.poisson(rate * np.where(after, 0.8, 1.0)).astype(float)
    frame = pl.DataFrame({"device_id": "c1", "ts_ms": ts, "usage": cars})
    period = (T0, int(ts[8 * 7 * 24]))
    models = fit_tow(
        frame.filter(pl.col("ts_ms") < period[1]), tz=TZ, metric="traffic.count.car", period=period
    )
    assert models[0].sufficient
    windows = frame.filter(pl.col("ts_ms") >= period[1]).select(
        "device_id",
        pl.lit("traffic.count.car").alias("metric"),
        pl.col("ts_ms").alias("bucket_start_ms"),
        pl.lit(3600).alias("width_s"),
    )
    pred = predict_windows(models, windows, tz=TZ)
    ef, km = 0.2176, 4.0
    avoided = float((pred["baseline"].to_numpy() - cars[after]).sum()) * km * ef
    truth = float((0.2 * rate[after]).sum()) * km * ef
    assert abs(avoided - truth) / truth < 0.05
    quarter = predict_tow(
        models,
        windows.head(1).with_columns(ts_ms=pl.col("bucket_start_ms"), width_s=pl.lit(900)),
        tz=TZ,
    )
    assert quarter["baseline"][0] == pytest.approx(pred["baseline"][0] / 4)


def test_tow_sufficiency_reasons() -> None:
    ts = T0 + np.arange(7 * 24, dtype=np.int64) * HOUR_MS  # one week: each hour of week once
    frame = pl.DataFrame({"device_id": "c", "ts_ms": ts, "usage": np.ones(len(ts))})
    (m,) = fit_tow(frame, tz=TZ, metric="traffic.count.car", period=(T0, T0 + 7 * DAY_MS))
    assert m.reasons == ("baseline_too_short", "tow_slots_sparse")
    assert not m.usable


def test_model_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        FittedModel(
            method="magic",
            device_id="d",
            metric="m",
            period_start_ms=0,
            period_end_ms=1,
            params={},
            metrics=None,
            sufficient=False,
        )
    with pytest.raises(ValueError, match="period_end_ms"):
        FittedModel(
            method="tow",
            device_id="d",
            metric="m",
            period_start_ms=5,
            period_end_ms=1,
            params={},
            metrics=None,
            sufficient=False,
        )
