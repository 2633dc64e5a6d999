"""Ground truth: the difference of the with- and without-intervention series, and what readings show."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from simulators.publishers.files import TRUTH_CSV, write_run
from simulators.run import Run
from simulators.truth import TRUTH_COLUMNS, factor

REGISTERS = ("energy.active.import", "energy.heat")
DELTAS = (
    "energy.lighting",
    "traffic.count.car",
    "traffic.count.bike",
    "traffic.count.bus",
    "passengers.count.bus",
    "trip.distance.escooter",
    "trip.distance.ebike",
)


def _local(run: Run) -> pl.DataFrame:
    tz = {c.id: c.tz for c in run.scenario.registry.cities.values()}
    frames = []
    for city, zone in tz.items():
        sub = run.clean.filter(pl.col("city") == city)
        frames.append(
            sub.with_columns(
                date=pl.from_epoch("ts_ms", time_unit="ms")
                .dt.replace_time_zone("UTC")
                .dt.convert_time_zone(zone)
                .dt.date()
            )
        )
    return pl.concat(frames)


def test_avoided_is_the_difference_of_the_two_series(clean_run: Run) -> None:
    t = clean_run.truth
    saved = t.filter(pl.col("metric").is_in([*REGISTERS, "energy.lighting", "traffic.count.car"]))
    np.testing.assert_allclose(saved["avoided"], saved["baseline"] - saved["actual"])
    more = t.filter(pl.col("metric") == "traffic.count.bike")
    np.testing.assert_allclose(more["avoided"], more["actual"] - more["baseline"])
    # shifted amounts: trip km and passengers of the electrified bus line count in full
    shifted = t.filter(
        pl.col("metric").str.starts_with("trip.") | (pl.col("metric") == "passengers.count.bus")
    )
    np.testing.assert_allclose(shifted["avoided"], shifted["actual"])


def test_no_effect_before_and_the_configured_effect_after(clean_run: Run) -> None:
    t = clean_run.truth
    before = t.filter(pl.col("date") < dt.date(2026, 2, 15))
    np.testing.assert_allclose(before["actual"], before["baseline"])
    after = t.filter(pl.col("date") > dt.date(2026, 2, 16))
    ratio = after.group_by("tenant", "metric").agg(
        r=pl.col("actual").sum() / pl.col("baseline").sum()
    )
    r = {(a, b): c for a, b, c in ratio.rows()}
    assert r[("tallinn-energy-1", "energy.active.import")] == pytest.approx(0.88)
    assert r[("helsinki-energy-1", "energy.heat")] == pytest.approx(0.90)
    assert r[("stavanger-energy-1", "energy.lighting")] == pytest.approx(0.70, rel=1e-4)
    assert 0.75 < r[("amsterdam-mobility-1", "traffic.count.car")] < 0.85
    assert 1.05 < r[("amsterdam-mobility-1", "traffic.count.bike")] < 1.25
    assert 1.05 < r[("helsinki-mobility-1", "passengers.count.bus")] < 1.15
    assert 1.1 < r[("tallinn-mobility-1", "trip.distance.escooter")] < 1.3


def test_truth_matches_what_the_clean_readings_show(clean_run: Run) -> None:
    local = _local(clean_run).sort(["device_id", "metric", "ts_ms"])
    used = (
        local.filter(pl.col("metric").is_in(REGISTERS))
        .with_columns(d=pl.col("value").diff().shift(-1).over(["device_id", "metric"]))
        .drop_nulls("d")
        .group_by("tenant", "metric", "date")
        .agg(shown=pl.col("d").sum())
    )
    counted = (
        local.filter(pl.col("metric").is_in(DELTAS))
        .group_by("tenant", "metric", "date")
        .agg(shown=pl.col("value").sum())
    )
    generated = (  # the PV counter restarts at local midnight: its last value is the day's
        local.filter(pl.col("metric") == "energy.pv.daily")
        .group_by("tenant", "metric", "date", "device_id")
        .agg(pl.col("value").max())
        .group_by("tenant", "metric", "date")
        .agg(shown=pl.col("value").sum())
    )
    shown = pl.concat([used, counted, generated])
    both = clean_run.truth.join(shown, on=["tenant", "metric", "date"], how="left")
    assert both["shown"].null_count() <= 3  # only days without a single shared trip
    both = both.with_columns(pl.col("shown").fill_null(0.0))
    np.testing.assert_allclose(both["shown"], both["actual"], rtol=1e-6, atol=0.01)


def test_co2e_uses_the_shared_factor_table(clean_run: Run) -> None:
    t = clean_run.truth
    ams = t.filter((pl.col("tenant") == "amsterdam-energy-1") & (pl.col("avoided") != 0))
    ef, fid = factor("grid:NL")
    assert ef == 0.2676
    assert set(ams["factor_id"]) == {fid}
    np.testing.assert_allclose(ams["avoided_co2e_kg"], ams["avoided"] * ef)
    cars = t.filter(pl.col("tenant") == "stavanger-mobility-1").filter(
        pl.col("metric") == "traffic.count.car"
    )
    np.testing.assert_allclose(cars["avoided_co2e_kg"], cars["avoided"] * 4.0 * 0.2176)
    scoot = t.filter(
        (pl.col("tenant") == "paris-mobility-1") & (pl.col("metric") == "trip.distance.escooter")
    )
    per_km = 0.35 * 0.2176 + 0.25 * 0.1224 + 0.2 * 0.00444 + 0.2 * 0.0 - 0.0249
    np.testing.assert_allclose(scoot["avoided_co2e_kg"], scoot["actual"] * per_km)
    bus = t.filter(pl.col("metric") == "passengers.count.bus")
    np.testing.assert_allclose(
        bus["avoided_co2e_kg"], bus["actual"] * 6.0 * (1.0 * 0.1224 - 0.0217)
    )


def test_heat_uses_the_pilots_heat_scope(clean_run: Run) -> None:
    heat = clean_run.truth.filter(pl.col("metric") == "energy.heat")
    ids = dict(heat.select("tenant", "factor_id").unique().rows())
    assert ids == {
        "paris-energy-1": "heat-district-fr-2025",
        "helsinki-energy-1": "heat-natural-gas-2025",
    }


def test_truth_files_have_the_agreed_columns(clean_run: Run, tmp_path: Path) -> None:
    write_run(clean_run, tmp_path)
    csv = pl.read_csv(tmp_path / TRUTH_CSV)
    assert csv.columns == TRUTH_COLUMNS
    assert csv.height == clean_run.truth.height
    assert (tmp_path / "truth.md").read_text().startswith("Ground truth")
