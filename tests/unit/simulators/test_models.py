"""Statistical sanity of the device models: profiles, weather dependence, device behaviour."""

from __future__ import annotations

import numpy as np
import polars as pl

from simulators.clock import TimeGrid
from simulators.devices import city_weather
from simulators.run import Run
from simulators.scenario import Scenario


def _local(run: Run, city: str, tz: str) -> pl.DataFrame:
    t = pl.from_epoch("ts_ms", time_unit="ms").dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    return run.clean.filter(pl.col("city") == city).with_columns(
        hour=t.dt.hour(), weekday=t.dt.weekday(), date=t.dt.date()
    )


def test_weekday_consumption_peaks_in_working_hours(clean_run: Run) -> None:
    df = _local(clean_run, "tallinn", "Europe/Tallinn").filter(
        pl.col("metric") == "energy.active.import"
    )
    df = (
        df.sort(["device_id", "ts_ms"])
        .with_columns(used=pl.col("value").diff().shift(-1).over("device_id"))
        .drop_nulls("used")
    )
    work = df.filter((pl.col("weekday") <= 5) & pl.col("hour").is_between(9, 16))["used"].mean()
    night = df.filter((pl.col("weekday") <= 5) & (pl.col("hour") < 5))["used"].mean()
    sunday = df.filter((pl.col("weekday") == 7) & pl.col("hour").is_between(9, 16))["used"].mean()
    assert work > 1.5 * night  # winter nights still heat
    assert work > 1.8 * sunday


def test_heating_load_rises_in_cold_weather(clean_run: Run) -> None:
    truth = clean_run.truth.filter(
        (pl.col("tenant") == "helsinki-energy-1") & (pl.col("metric") == "energy.heat")
    )
    temps = (
        _local(clean_run, "helsinki", "Europe/Helsinki")
        .filter(pl.col("metric") == "weather.temperature")
        .group_by("date")
        .agg(temp=pl.col("value").mean())
    )
    both = truth.join(temps, on="date").filter(
        pl.col("date").is_between(truth["date"][1], truth["date"][-2])
    )
    r = np.corrcoef(both["baseline"], both["temp"])[0, 1]
    assert r < -0.8


def test_winter_is_colder_than_summer_and_helsinki_colder_than_paris(demo: Scenario) -> None:
    year = TimeGrid(start_ms=1_767_225_600_000, step_ms=3_600_000, steps=8760, intervention_ms=0)
    rng = np.random.default_rng(1)
    hel = city_weather(rng, year, demo.climates["helsinki"]).temp
    par = city_weather(rng, year, demo.climates["paris"]).temp
    jan, jul = slice(0, 31 * 24), slice(181 * 24, 212 * 24)
    assert hel[jul].mean() - hel[jan].mean() > 15
    assert hel.mean() < par.mean()
    assert 4 < np.ptp(hel[jul][:24]) < 16  # a diurnal swing, not noise


def test_pv_is_dark_at_night_and_its_daily_counter_resets_at_midnight(clean_run: Run) -> None:
    df = _local(clean_run, "amsterdam", "Europe/Amsterdam").filter(
        pl.col("device_id").str.contains("-pv-")
    )
    power = df.filter(pl.col("metric") == "power.active")
    assert power.filter(pl.col("hour").is_in([0, 1, 2, 22, 23]))["value"].max() == 0.0
    assert power.filter(pl.col("hour") == 12)["value"].mean() > 1.0
    daily = df.filter(pl.col("metric") == "energy.pv.daily").sort(["device_id", "ts_ms"])
    firsts = daily.group_by("device_id", "date").agg(pl.col("value").first())
    assert firsts["value"].max() == 0.0
    assert daily["value"].max() > 5.0


def test_ev_register_only_grows_and_power_means_charging(clean_run: Run) -> None:
    df = clean_run.clean.filter(pl.col("device_id").str.contains("-evse-")).sort(
        ["device_id", "metric", "ts_ms"]
    )
    reg = df.filter(pl.col("metric") == "energy.active.import")
    steps = reg.with_columns(d=pl.col("value").diff().over("device_id")).drop_nulls("d")
    assert steps["d"].min() >= 0.0
    assert (steps["d"] > 0).mean() > 0.05  # sessions happen
    assert set(reg["unit"]) == {"Wh"}
    power = df.filter(pl.col("metric") == "power.active")["value"]
    assert power.max() <= 22.0
    assert (power > 0).mean() < 0.8


def test_street_lights_are_off_at_noon_and_dimmed_after_midnight(clean_run: Run) -> None:
    df = _local(clean_run, "stavanger", "Europe/Oslo").filter(pl.col("metric") == "energy.lighting")
    assert df.filter(pl.col("hour") == 12)["value"].max() == 0.0
    evening = df.filter(pl.col("hour") == 20)["value"].mean()
    late = df.filter(pl.col("hour") == 2)["value"].mean()
    assert late < 0.8 * evening


def test_car_counts_peak_at_commute_times(clean_run: Run) -> None:
    df = _local(clean_run, "stavanger", "Europe/Oslo").filter(
        (pl.col("metric") == "traffic.count.car") & (pl.col("weekday") <= 5)
    )
    by_hour = df.group_by("hour").agg(pl.col("value").mean()).sort("hour")["value"].to_numpy()
    assert by_hour.argmax() in (7, 8, 16, 17)
    assert by_hour[8] > 3 * by_hour[3]


def test_trips_never_overlap_and_fit_in_their_interval(clean_run: Run) -> None:
    trips = clean_run.clean.filter(pl.col("metric").str.starts_with("trip.")).sort(
        ["device_id", "ts_ms"]
    )
    gaps = trips.with_columns(g=pl.col("ts_ms").diff().over("device_id")).drop_nulls("g")["g"]
    assert gaps.min() > 0
    assert trips["value"].min() >= 0.3
    assert trips.filter(pl.col("metric") == "trip.distance.escooter")["value"].max() <= 14 * 0.25


def test_trips_have_a_start_an_end_and_a_plausible_speed(clean_run: Run) -> None:
    trips = clean_run.trips
    sent = clean_run.clean.filter(pl.col("metric").str.starts_with("trip."))
    assert trips.height == sent.height
    assert (
        trips.select("device_id", ts_ms="end_ms", value="km")
        .sort(["device_id", "ts_ms"])
        .equals(sent.select("device_id", "ts_ms", "value").sort(["device_id", "ts_ms"]))
    )
    kmh = trips["km"] / ((trips["end_ms"] - trips["start_ms"]) / 3_600_000)
    assert kmh.min() > 10
    assert kmh.max() < 20
    nxt = trips.with_columns(n=pl.col("start_ms").shift(-1).over("device_id")).drop_nulls("n")
    assert (nxt["n"] >= nxt["end_ms"]).all()
