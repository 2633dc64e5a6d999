"""Offline accuracy of the kernel chain on the ``demo`` scenario against the simulator's truth.

The demo runs in memory through the kernels as the processor runs them (see ``demo_pipeline``),
once with the scenario's faults and once without. Two separate questions:

- fault handling: avoided kgCO2e with faults against the same pipeline without faults. What is
  left (at most 1.7 % for energy counters and counts) is the hours masked by gaps over a window
  edge, glitches, resets, spikes and late readings (1-4 % of the hours); street lighting keeps
  its baseline-period spikes in the fitted baseline (the provider fits on flagged windows too);
- baseline model: the faults-off run against the truth. A 28-day time-of-week baseline cannot
  follow the season (heating and lighting fall from February to March), so several energy pilots
  are far off; this is model error, not cleaning error. The temperature model (TOWT) fixes most
  of it, but the provider only fits it on 365 days (CalTRACK); ``towt_error`` shows the faults-on
  result with it allowed on the demo's 28 days.

``pytest -s`` prints the table.
"""

from __future__ import annotations

import polars as pl
import pytest

from deploy.local.demo import DEMO_LATENESS_S
from processors.kernels import EventTimeParams

from .demo_pipeline import accuracy, delivered_readings, run_windows, scored_hours

KEY = ["tenant", "metric"]
POLL_MS = 6 * 3_600_000  # delivery time per poll (one step, then the idle timer)

# |faults on - faults off| / |faults off| of avoided kgCO2e, per pilot and metric
FAULT_TOLERANCE = 0.03
FAULT_TOLERANCE_EXCEPTIONS = {
    # lighting spikes are masked in the reporting period, but the provider fits the baseline on
    # every hourly window, spiky ones included: the baseline stays inflated by them
    ("stavanger-energy-1", "energy.lighting"): 0.1,
    # sparse trips: a spike-free long trip can still be masked (no neighbour within the rule)
    ("paris-mobility-1", "trip.distance.escooter"): 0.05,
}

# |ours - truth| / |truth| of avoided kgCO2e reached on the faults-off run, and why
MODEL_TOLERANCE: dict[tuple[str, str], float] = {
    ("amsterdam-energy-1", "energy.active.import"): 0.06,
    ("amsterdam-mobility-1", "traffic.count.car"): 0.03,
    ("amsterdam-energy-1", "energy.pv.daily"): 0.01,
    ("helsinki-energy-1", "energy.heat"): 0.07,
    ("helsinki-mobility-1", "passengers.count.bus"): 0.01,
    ("stavanger-mobility-1", "traffic.count.car"): 0.03,
    # time-of-week baseline over a warming season: heating, lighting and EV chargers over-predicted
    ("paris-energy-1", "energy.active.import"): 1.3,
    ("paris-energy-1", "energy.heat"): 2.6,
    ("stavanger-energy-1", "energy.lighting"): 0.55,
    ("tallinn-energy-1", "energy.active.import"): 0.65,
    # sparse trips: events are not masked for coverage or gaps (measured within 1 %)
    ("paris-mobility-1", "trip.distance.ebike"): 0.02,
    ("paris-mobility-1", "trip.distance.escooter"): 0.02,
    ("tallinn-mobility-1", "trip.distance.escooter"): 0.02,
}


def _tables(faults: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accuracy with the provider's baselines, and with the temperature model on 28 days."""
    from simulators import load_scenario, simulate, with_overrides

    scn = load_scenario("demo")
    if not faults:
        scn = with_overrides(scn, faults=False)
    run = simulate(scn)
    params = EventTimeParams(allowed_lateness_ms=DEMO_LATENESS_S * 1000)  # as the demo runs
    windows = run_windows(delivered_readings(run), params, poll_ms=POLL_MS)
    with_rule = pl.col("true_co2e_kg") != 0  # bike counts, the LEZ bus lane: no emission rule
    return (
        accuracy(scored_hours(windows, scn), run.truth, scn).filter(with_rule),
        accuracy(scored_hours(windows, scn, hourly_min_days=28), run.truth, scn).filter(with_rule),
    )


@pytest.fixture(scope="module")
def tables() -> pl.DataFrame:
    (on, on_towt), (off, _) = _tables(True), _tables(False)
    both = on.join(off.select(*KEY, co2e_clean=pl.col("co2e_kg")), on=KEY).join(
        on_towt.select(*KEY, co2e_towt=pl.col("co2e_kg")), on=KEY
    )
    out = both.with_columns(
        fault_error=(pl.col("co2e_kg") - pl.col("co2e_clean")) / pl.col("co2e_clean").abs(),
        model_error=(pl.col("co2e_clean") - pl.col("true_co2e_kg")) / pl.col("true_co2e_kg").abs(),
        towt_error=(pl.col("co2e_towt") - pl.col("true_co2e_kg")) / pl.col("true_co2e_kg").abs(),
    )
    with pl.Config(tbl_rows=40, tbl_cols=12, tbl_width_chars=220, float_precision=3):
        print(out.select(*KEY, "true_co2e_kg", "co2e_kg", "co2e_clean", "masked_share",
                         "co2e_error", "fault_error", "model_error", "towt_error"))  # fmt: skip
    return out


def test_energy_counters_are_no_longer_off_by_orders_of_magnitude(tables: pl.DataFrame) -> None:
    energy = tables.filter(pl.col("metric").str.starts_with("energy."))
    assert energy.height == 7
    assert (energy["co2e_kg"] > 0).all()
    assert (energy["co2e_kg"] < 4 * energy["true_co2e_kg"]).all()


def test_faults_change_avoided_emissions_little(tables: pl.DataFrame) -> None:
    limits = pl.DataFrame(
        [(t, m, v) for (t, m), v in FAULT_TOLERANCE_EXCEPTIONS.items()],
        schema=["tenant", "metric", "limit"],
        orient="row",
    )
    checked = tables.join(limits, on=KEY, how="left").with_columns(
        pl.col("limit").fill_null(FAULT_TOLERANCE)
    )
    misses = checked.filter(pl.col("fault_error").abs() > pl.col("limit"))
    assert misses.is_empty(), misses.select(*KEY, "fault_error")


def test_avoided_emissions_against_the_truth(tables: pl.DataFrame) -> None:
    limits = pl.DataFrame(
        [(t, m, v) for (t, m), v in MODEL_TOLERANCE.items()],
        schema=["tenant", "metric", "limit"],
        orient="row",
    )
    checked = tables.join(limits, on=KEY, how="left")
    assert checked["limit"].is_not_null().all(), "a pilot metric without a stated tolerance"
    misses = checked.filter(pl.col("model_error").abs() > pl.col("limit"))
    assert misses.is_empty(), misses.select(*KEY, "model_error", "limit")


def test_energy_with_the_temperature_model_on_28_days_is_within_3_percent(
    tables: pl.DataFrame,
) -> None:
    # faults on; the runtime's provider needs 365 days for this model (CalTRACK), the demo has 28
    limits = {
        ("amsterdam-energy-1", "energy.active.import"): 0.03,
        ("helsinki-energy-1", "energy.heat"): 0.03,
        ("paris-energy-1", "energy.heat"): 0.03,
        ("tallinn-energy-1", "energy.active.import"): 0.03,
        ("amsterdam-energy-1", "energy.pv.daily"): 0.01,
        # two EV chargers (no effect in the truth) under a noisy time-of-week baseline
        ("paris-energy-1", "energy.active.import"): 0.15,
        # street lighting follows daylight, which no model here knows (and see above)
        ("stavanger-energy-1", "energy.lighting"): 0.65,
    }
    energy = tables.filter(pl.col("metric").str.starts_with("energy."))
    errors = {(t, m): e for t, m, e in energy.select(*KEY, "towt_error").iter_rows()}
    assert set(errors) == set(limits)
    misses = {k: round(v, 4) for k, v in errors.items() if abs(v) > limits[k]}
    assert not misses
