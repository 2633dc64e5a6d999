"""CalTRACK-style daily model: candidate selection, sufficiency refusals, savings accuracy."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from processors.baselines import DailyParams, FittedModel, fit_daily, predict_daily

DAY = 86_400_000
YEAR = (0, 365 * DAY)


def _temps(days: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = np.arange(days)
    return 10 - 12 * np.cos(2 * np.pi * d / 365) + rng.normal(0, 3, days)


def _frame(usage: np.ndarray, temp: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {"day_ms": np.arange(len(usage)) * DAY, "usage": usage, "temperature": temp}
    )


# balance points on the search grid: 60 F = 15.556 C, 69 F = 20.556 C, 72 F = 22.222 C
H60, C69, C72 = 15.556, 20.556, 22.222
FORMS = {
    "hdd_cdd": lambda t: 100 + 5 * np.maximum(H60 - t, 0) + 8 * np.maximum(t - C72, 0),
    "hdd": lambda t: 100 + 5 * np.maximum(H60 - t, 0),
    "cdd": lambda t: 100 + 8 * np.maximum(t - C69, 0),
    "intercept": lambda t: 100 + 0 * t,
}


@pytest.mark.parametrize("form", list(FORMS))
def test_selection_picks_the_generating_form(form: str) -> None:
    temp = _temps(365, 3)
    rng = np.random.default_rng(4)
    usage = FORMS[form](temp) + rng.normal(0, 4, 365)
    m = fit_daily(_frame(usage, temp), device_id="x", metric="energy.active.import", period=YEAR)
    assert m.params["form"] == form
    assert m.sufficient
    assert m.metrics is not None
    assert m.metrics.meets_ashrae


def test_balance_points_and_slopes_are_recovered() -> None:
    temp = _temps(365, 5) + 4.0  # a warmer site: enough cooling days
    usage = 100 + 5 * np.maximum(H60 - temp, 0) + 8 * np.maximum(temp - C69, 0)
    usage += np.random.default_rng(6).normal(0, 2, 365)
    p = fit_daily(_frame(usage, temp), device_id="x", metric="m", period=YEAR).params
    assert p["hbp"] == pytest.approx(H60)
    assert p["cbp"] == pytest.approx(C69)
    assert p["beta_h"] == pytest.approx(5.0, rel=0.1)
    assert p["beta_c"] == pytest.approx(8.0, rel=0.1)


def test_gas_never_gets_a_cooling_term() -> None:
    temp = _temps(365, 7)
    usage = FORMS["hdd_cdd"](temp)
    m = fit_daily(
        _frame(usage, temp), device_id="x", metric="m", period=YEAR, params=DailyParams(fuel="gas")
    )
    assert m.params["beta_c"] == 0.0
    assert m.params["form"] == "hdd"


def test_sufficiency_reasons() -> None:
    temp = _temps(365, 8)
    usage = FORMS["hdd"](temp)
    short = fit_daily(
        _frame(usage[:200], temp[:200]), device_id="x", metric="m", period=(0, 200 * DAY)
    )
    assert short.reasons == ("baseline_too_short",)
    gappy = usage.copy()
    gappy[:38] = np.nan
    missing = fit_daily(_frame(gappy, temp), device_id="x", metric="m", period=YEAR)
    assert missing.reasons == ("too_many_missing_days",)
    zeros = usage.copy()
    zeros[100:138] = 0.0  # electricity: a zero day is a missing day
    assert fit_daily(_frame(zeros, temp), device_id="x", metric="m", period=YEAR).reasons == (
        "too_many_missing_days",
    )
    gas = fit_daily(
        _frame(zeros, temp), device_id="x", metric="m", period=YEAR, params=DailyParams(fuel="gas")
    )
    assert gas.sufficient
    empty = fit_daily(_frame(usage[:2], temp[:2]), device_id="x", metric="m", period=YEAR)
    assert "no_data" in empty.reasons
    assert not empty.usable


def test_avoided_energy_within_2_percent_of_truth_with_10_percent_reduction() -> None:
    temp = _temps(730, 11)
    rng = np.random.default_rng(12)
    truth = FORMS["hdd_cdd"](temp)
    usage = truth * np.where(np.arange(730) >= 365, 0.9, 1.0) + rng.normal(0, 3, 730)
    model = fit_daily(_frame(usage[:365], temp[:365]), device_id="b", metric="m", period=YEAR)
    report = pl.DataFrame(
        {"device_id": "b", "day_ms": np.arange(365, 730) * DAY, "temperature": temp[365:]}
    )
    pred = predict_daily([model], report)
    avoided = float((pred["baseline"].to_numpy() - usage[365:]).sum())
    true_avoided = float(0.1 * truth[365:].sum())
    assert abs(avoided - true_avoided) / true_avoided < 0.02
    assert pred["baseline_model_id"].unique().to_list() == [model.model_id]


def test_model_round_trips_through_a_dict_with_a_stable_id() -> None:
    temp = _temps(365, 13)
    m = fit_daily(_frame(FORMS["hdd"](temp), temp), device_id="x", metric="m", period=YEAR)
    again = FittedModel.from_dict(m.to_dict())
    assert again == m
    refit = fit_daily(_frame(FORMS["hdd"](temp), temp), device_id="x", metric="m", period=YEAR)
    assert refit.model_id == m.model_id


def test_windows_of_a_day_add_up_to_the_daily_prediction() -> None:
    from processors.baselines import predict_windows

    temp = _temps(365, 14)
    model = fit_daily(_frame(FORMS["hdd"](temp), temp), device_id="b", metric="m", period=YEAR)
    day0 = 400 * DAY  # a reporting day, UTC midnight = local midnight in UTC
    hours = day0 + np.arange(24) * 3_600_000
    temperature = pl.DataFrame({"ts_ms": hours, "temperature": np.linspace(-2.0, 6.0, 24)})
    windows = pl.DataFrame(
        {"device_id": "b", "metric": "m", "bucket_start_ms": hours, "width_s": 3600}
    )
    pred = predict_windows([model], windows, tz="UTC", temperature=temperature)
    daily = predict_daily([model], pl.DataFrame({"device_id": "b", "temperature": [2.0]}))
    assert pred["baseline"].sum() == pytest.approx(daily["baseline"][0])
