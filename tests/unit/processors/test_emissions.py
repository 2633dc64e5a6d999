"""Deltas and avoided emissions: energy, car counts, mode shift, masking."""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.testing import assert_allclose

from pilotstream.registry import load_registry
from processors.factors import load_factors
from processors.kernels import MetricRule, emission_deltas, mode_shift_kg, pilot_rules
from processors.kernels import flags as qf

T = 1_704_067_200_000  # 2024-01-01
REG = load_registry()
FACTORS = load_factors()


def _rules(tenant: str):
    pilot = REG.pilots[tenant]
    return pilot_rules(pilot, REG.cities[pilot.city])


def _windows(
    metric: list[str],
    actual: list[float],
    baseline: list[float | None],
    flags: list[int] | None = None,
) -> pl.DataFrame:
    n = len(metric)
    return pl.DataFrame(
        {
            "metric": metric,
            "bucket_start_ms": [T] * n,
            "actual": actual,
            "baseline": baseline,
            "flags": flags or [0] * n,
        },
        schema={
            "metric": pl.String,
            "bucket_start_ms": pl.Int64,
            "actual": pl.Float64,
            "baseline": pl.Float64,
            "flags": pl.Int64,
        },
    )


def test_energy_delta_times_grid_factor_and_heat_scope() -> None:
    w = _windows(["energy.active.import", "energy.heat"], [8.0, 50.0], [10.0, 60.0])
    result = emission_deltas(w, rules=_rules("paris-energy-1"), factors=FACTORS)
    assert_allclose(result["delta"].to_numpy(), [2.0, 10.0])
    assert_allclose(result["avoided_co2e_kg"].to_numpy(), [2.0 * 0.056, 10.0 * 0.112])
    assert result["factor_id"].to_list() == ["grid-fr-2023", "heat-district-fr-2025"]


def test_car_counts_avoided_cars_times_trip_km_times_car_factor() -> None:
    w = _windows(["traffic.count.car"], [70.0], [100.0])
    result = emission_deltas(w, rules=_rules("stavanger-mobility-1"), factors=FACTORS)
    assert_allclose(result["avoided_co2e_kg"].to_numpy(), [30 * 4.0 * 0.2176])


def test_mode_shift_distance_times_share_weighted_factor_difference() -> None:
    shares = {"car_combustion": 0.35, "bus_diesel": 0.25, "metro": 0.2, "walk": 0.2}
    ef = {
        "car_combustion": 0.2176,
        "bus_diesel": 0.1224,
        "metro": 0.00444,
        "walk": 0.0,
        "escooter": 0.0249,
    }
    expected = 12.5 * (0.35 * 0.2176 + 0.25 * 0.1224 + 0.2 * 0.00444 - 0.0249)
    assert_allclose(mode_shift_kg(np.array([12.5]), shares, "escooter", ef), [expected])
    w = _windows(["trip.distance.escooter"], [12.5], [None])
    result = emission_deltas(w, rules=_rules("paris-mobility-1"), factors=FACTORS)
    assert_allclose(result["avoided_co2e_kg"].to_numpy(), [expected])


def test_bus_passengers_shift_from_diesel_to_electric_bus() -> None:
    w = _windows(["passengers.count.bus"], [40.0], [None])
    result = emission_deltas(w, rules=_rules("helsinki-mobility-1"), factors=FACTORS)
    assert_allclose(result["avoided_co2e_kg"].to_numpy(), [40 * 6.0 * (0.1224 - 0.0217)])


def test_masked_windows_keep_actual_but_avoid_nothing() -> None:
    w = _windows(
        ["energy.active.import", "energy.active.import", "weather.temperature"],
        [8.0, 8.0, 3.0],
        [10.0, None, None],
        [qf.GAP | qf.LOW_COVERAGE, 0, 0],
    )
    result = emission_deltas(w, rules=_rules("paris-energy-1"), factors=FACTORS)
    assert result["masked"].to_list() == [True, True, True]
    assert result["avoided_co2e_kg"].to_list() == [0.0, 0.0, 0.0]
    assert result["actual"].to_list() == [8.0, 8.0, 3.0]


def test_cached_factors_follow_validity_boundaries_across_calls(tmp_path) -> None:
    body = (
        "factor_id,scope,unit,value,basis,source,year,valid_from,valid_to\n"
        "fr23,grid:FR,kgCO2e/kWh,0.056,lifecycle,Ember,2023,2023-01-01,\n"
        "fr24,grid:FR,kgCO2e/kWh,0.050,lifecycle,Ember,2024,2024-01-01,\n"
        "fr-h,grid:FR,kgCO2e/kWh,0.030,direct,RTE,2024,2024-01-01T10:00:00Z,2024-01-01T11:00:00Z\n"
    )
    (tmp_path / "f.csv").write_text(body)
    factors = load_factors(tmp_path / "f.csv")
    rules = _rules("paris-energy-1")
    hour = 3_600_000
    expected = {  # window start -> factor id: before, inside and after the hourly row
        T - 1: "fr23",
        T: "fr24",
        T + 10 * hour - 1: "fr24",
        T + 10 * hour: "fr-h",
        T + 11 * hour - 1: "fr-h",
        T + 11 * hour: "fr24",
    }
    for start, factor_id in [*expected.items(), *reversed(expected.items())]:  # cache hits too
        w = _windows(["energy.active.import"], [1.0], [2.0]).with_columns(
            bucket_start_ms=pl.lit(start, pl.Int64)
        )
        result = emission_deltas(w, rules=rules, factors=factors)
        assert result["factor_id"].to_list() == [factor_id]
    w = _windows(["energy.active.import"] * 3, [1.0] * 3, [2.0] * 3).with_columns(
        bucket_start_ms=pl.Series([T + 10 * hour, T - 1, T + 10 * hour])
    )
    result = emission_deltas(w, rules=rules, factors=factors)
    assert result["factor_id"].to_list() == ["fr-h", "fr23", "fr-h"]
    assert_allclose(result["factor"].to_numpy(), [0.030, 0.056, 0.030])


def test_unknown_metric_and_scope_leave_factor_null_and_mask() -> None:
    rules = dict(_rules("paris-energy-1"))
    rules["power.active"] = MetricRule("power.active", "actual", (("nope:scope", 1.0),))
    w = _windows(
        ["weather.temperature", "power.active", "energy.active.import"], [1.0] * 3, [2.0] * 3
    )
    result = emission_deltas(w, rules=rules, factors=FACTORS)
    assert result["factor"].to_list() == [0.0, 0.0, 0.056]
    assert result["factor_id"].to_list() == ["", "", "grid-fr-2023"]
    assert result["masked"].to_list() == [True, True, False]
