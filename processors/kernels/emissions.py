"""From window actuals and baselines to deltas and avoided kgCO2e, per the pilot's method.

Each metric a pilot reports has a :class:`MetricRule`: how the saving is formed and which emission
factors weigh it. The factor of a window is ``sum(weight_i * EF(scope_i, window start))``, so a
mode shift is one rule: ``distance * (sum share_i * EF_i - EF_new)`` (DOMAIN.md §3).

- energy (``baseline_minus_actual``): delta = baseline - actual kWh, factor = grid (or heat scope);
- PV generation (``actual``): generated kWh displace grid electricity;
- car counts (``baseline_minus_actual``): avoided cars x ``car_trip_km`` x EF car;
- shared e-scooter / e-bike distance (``actual``): km x (sum share_i EF_i - EF_mode);
- bus passengers (``actual``): passengers x ``bus_trip_km`` x (sum share_i EF_i - EF electric bus).

For ``actual`` rules the "delta" is the shifted amount (km, kWh generated) rather than
baseline - actual; the formula ``avoided = delta * factor`` holds for every rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from pilotstream.registry import City, Pilot
from processors.factors import FactorTable
from processors.kernels import flags as qf

Saving = Literal["baseline_minus_actual", "actual"]
_SHIFT_MODES = {"trip.distance.escooter": "escooter", "trip.distance.ebike": "ebike"}


@dataclass(frozen=True, slots=True)
class MetricRule:
    """How one metric's windows turn into avoided emissions."""

    metric: str  # metric name
    saving: Saving  # how the delta is formed
    terms: tuple[tuple[str, float], ...]  # (factor scope, weight per canonical unit)


def pilot_rules(pilot: Pilot, city: City) -> dict[str, MetricRule]:
    """The rules of every metric a pilot's method covers (pilot params from the registry)."""
    grid = f"grid:{city.country}"
    heat = str(pilot.params.get("heat_scope", grid))
    if pilot.lot == "energy":
        rules = [
            MetricRule("energy.active.import", "baseline_minus_actual", ((grid, 1.0),)),
            MetricRule("energy.lighting", "baseline_minus_actual", ((grid, 1.0),)),
            MetricRule("energy.heat", "baseline_minus_actual", ((heat, 1.0),)),
            MetricRule("energy.pv.daily", "actual", ((grid, 1.0),)),
        ]
        return {r.metric: r for r in rules}
    shares = _shares(pilot.params.get("replaced_mode_shares"))
    rules = []
    car_km = pilot.params.get("car_trip_km")
    if isinstance(car_km, int | float):
        rules.append(
            MetricRule(
                "traffic.count.car",
                "baseline_minus_actual",
                (("mode:car_combustion", float(car_km)),),
            )
        )
    if shares:
        for metric, mode in _SHIFT_MODES.items():
            rules.append(MetricRule(metric, "actual", mode_shift_terms(shares, mode, 1.0)))
        bus_km = pilot.params.get("bus_trip_km")
        if isinstance(bus_km, int | float):
            rules.append(
                MetricRule(
                    "passengers.count.bus",
                    "actual",
                    mode_shift_terms(shares, "bus_electric", float(bus_km)),
                )
            )
    return {r.metric: r for r in rules}


def mode_shift_terms(
    shares: Mapping[str, float], new_mode: str, km_per_unit: float
) -> tuple[tuple[str, float], ...]:
    """Factor terms of a mode shift: ``km * (sum share_i EF_i - EF_new)``."""
    return (
        *((f"mode:{mode}", share * km_per_unit) for mode, share in sorted(shares.items())),
        (f"mode:{new_mode}", -km_per_unit),
    )


def mode_shift_kg(
    distance_km: np.ndarray, shares: Mapping[str, float], new_mode: str, ef: Mapping[str, float]
) -> np.ndarray:
    """Avoided kgCO2e of trips on ``new_mode``: ``distance * (sum share_i EF_i - EF_new)``."""
    replaced = sum(share * ef[mode] for mode, share in shares.items())
    return np.asarray(distance_km, dtype=np.float64) * (replaced - ef[new_mode])


def window_factors(
    windows: pl.DataFrame, rules: Mapping[str, MetricRule], factors: FactorTable
) -> pl.DataFrame:
    """``factor`` (kgCO2e per unit) and ``factor_id`` of each window, in input order."""
    terms = pl.DataFrame(
        [(r.metric, scope, w) for r in rules.values() for scope, w in r.terms],
        schema={"metric": pl.String, "scope": pl.String, "weight": pl.Float64},
        orient="row",
    )
    # windows of many devices share (metric, start): compute each pair once
    keys = windows.select("metric", "bucket_start_ms").unique()
    exploded = keys.with_row_index("_w").join(terms, on="metric", how="inner")
    found = factors.lookup(exploded["scope"], exploded["bucket_start_ms"].to_numpy())
    per_term = pl.concat([exploded, found], how="horizontal")
    summed = per_term.group_by("_w").agg(
        factor=(pl.col("weight") * pl.col("factor")).sum(),
        complete=pl.col("factor").is_not_null().all(),
        factor_id=pl.when(pl.len() == 1)
        .then(pl.col("factor_id").first())
        .otherwise(pl.format("{}*{}", "factor_id", pl.col("weight").round(4)).str.join("+")),
    )
    per_key = keys.with_row_index("_w").join(summed, on="_w", how="left").drop("_w")
    return (
        windows.select("metric", "bucket_start_ms")
        .join(per_key, on=["metric", "bucket_start_ms"], how="left", maintain_order="left")
        .select(
            factor=pl.when(pl.col("complete")).then(pl.col("factor")),
            factor_id=pl.col("factor_id").fill_null(""),
        )
    )


def emission_deltas(
    windows: pl.DataFrame, *, rules: Mapping[str, MetricRule], factors: FactorTable
) -> pl.DataFrame:
    """Add ``delta``, ``factor``, ``factor_id``, ``avoided_co2e_kg`` and ``masked`` to windows.

    ``windows`` needs ``metric``, ``bucket_start_ms``, ``actual``, ``baseline`` (may be null for
    ``actual`` rules) and ``flags``. A window is masked (delta and avoided set to 0) when its flags
    intersect :data:`flags.MASKING`, its metric has no rule, or its baseline or factor is missing.
    """
    saving = pl.col("metric").replace_strict(
        {m: r.saving for m, r in rules.items()}, default=None, return_dtype=pl.String
    )
    raw_delta = (
        pl.when(saving == "actual")
        .then(pl.col("actual"))
        .when(saving == "baseline_minus_actual")
        .then(pl.col("baseline") - pl.col("actual"))
    )
    out = pl.concat([windows, window_factors(windows, rules, factors)], how="horizontal")
    masked = (
        ((pl.col("flags") & qf.MASKING) != 0) | raw_delta.is_null() | pl.col("factor").is_null()
    )
    return (
        out.with_columns(masked=masked)
        .with_columns(
            delta=pl.when(pl.col("masked")).then(0.0).otherwise(raw_delta),
            factor=pl.col("factor").fill_null(0.0),
        )
        .with_columns(avoided_co2e_kg=pl.col("delta") * pl.col("factor"))
    )


def _shares(raw: object) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): float(v) for k, v in raw.items()}
