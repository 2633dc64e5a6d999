"""Ground truth: per pilot, metric and city-local day, the true quantity with and without the
intervention, the avoided quantity and the avoided kgCO2e, using the shared emission factor table.

Semantics (the processors follow the same; also written next to the truth files as truth.md):

- Energy (``energy.active.import``, ``energy.lighting``: grid factor ``grid:{country}`` of the city;
  ``energy.heat``: the pilot's ``heat_scope``): ``avoided = baseline - actual`` kWh,
  ``avoided_co2e_kg = avoided * factor``. A register's consumption between two readings belongs to
  the local day of the earlier reading; a per-interval reading at ``ts`` covers ``[ts, ts + step)``.
- PV generation (``energy.pv.daily``, a counter reset at local midnight): every kWh generated
  displaces grid electricity: ``avoided = actual`` kWh, ``avoided_co2e_kg = avoided * grid factor``.
- Car counts (``traffic.count.car``): ``avoided = baseline - actual`` vehicles,
  ``avoided_co2e_kg = avoided * car_trip_km * EF(mode:car_combustion)``.
- Shared e-bike / e-scooter trips (``trip.distance.{mode}``): every km replaces the pilot's
  ``replaced_mode_shares``: ``avoided = actual`` km, ``avoided_co2e_kg = km * (sum_i share_i * EF_i -
  EF(mode:{mode}))``; ``baseline`` is the km the service would have carried without the intervention.
- Bus boardings (``passengers.count.bus``): extra boardings on the electric line,
  ``avoided = actual - baseline``, ``avoided_co2e_kg = avoided * bus_trip_km *
  (EF(mode:bus_diesel) - EF(mode:bus_electric))``.
- Bike and bus-vehicle counts: ``avoided = actual - baseline`` (more bikes), no CO2e of their own
  (the mode shift shows in the car counts); factor_id is empty.

Days are complete local days of the simulated period (first and last may be partial).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources

import polars as pl

from simulators.generate import GroupChunk
from simulators.scenario import Scenario, ScenarioError

TRUTH_COLUMNS = [
    "tenant",
    "city",
    "date",
    "metric",
    "actual",
    "baseline",
    "avoided",
    "unit",
    "avoided_co2e_kg",
    "factor_id",
]


@cache
def emission_factors() -> pl.DataFrame:
    """The shared factor table (pilotstream/data/emission_factors.csv)."""
    text = resources.files("pilotstream").joinpath("data/emission_factors.csv").read_bytes()
    return pl.read_csv(text, schema_overrides={"valid_to": pl.String})


def factor(scope: str) -> tuple[float, str]:
    """(kgCO2e per unit, factor_id) of a scope; the most recent ``valid_from`` wins."""
    rows = emission_factors().filter(pl.col("scope") == scope).sort("valid_from")
    if rows.height == 0:
        msg = f"no emission factor for scope {scope!r}"
        raise ScenarioError(msg)
    return float(rows["value"][-1]), str(rows["factor_id"][-1])


def day_frame(chunks: Iterable[GroupChunk]) -> pl.DataFrame:
    """Accounted day totals of all chunks, summed per (tenant, city, metric, local date)."""
    frames = [
        pl.DataFrame(
            {
                "tenant": c.group.tenant,
                "city": c.city,
                "metric": b.metric,
                "day": b.truth.day,
                "actual": b.truth.actual,
                "baseline": b.truth.baseline,
            }
        )
        for c in chunks
        for b in c.blocks
        if b.truth is not None
    ]
    if not frames:
        return pl.DataFrame(
            schema={
                "tenant": pl.String,
                "city": pl.String,
                "metric": pl.String,
                "day": pl.Int64,
                "actual": pl.Float64,
                "baseline": pl.Float64,
            }
        )
    return (
        pl.concat(frames)
        .group_by(["tenant", "city", "metric", "day"])
        .agg(pl.col("actual").sum(), pl.col("baseline").sum())
    )


def truth_frame(chunks: Iterable[GroupChunk], scn: Scenario) -> pl.DataFrame:
    """The ground truth table (columns :data:`TRUTH_COLUMNS`), sorted by tenant, metric, date."""
    days = day_frame(chunks)
    keys = days.select("tenant", "metric").unique().sort(["tenant", "metric"]).rows()
    rules = pl.DataFrame(
        [_rule(scn, tenant, metric) for tenant, metric in keys],
        schema={
            "tenant": pl.String,
            "metric": pl.String,
            "unit": pl.String,
            "sign": pl.Float64,
            "on_actual": pl.Boolean,
            "per_unit": pl.Float64,
            "factor_id": pl.String,
        },
        orient="row",
    )
    a, b = pl.col("actual"), pl.col("baseline")
    avoided = (
        pl.when(pl.col("on_actual")).then(a).when(pl.col("sign") > 0).then(b - a).otherwise(a - b)
    )
    out = (
        days.join(rules, on=["tenant", "metric"], how="left")
        .with_columns(date=pl.col("day").cast(pl.Date), avoided=avoided)
        .with_columns(avoided_co2e_kg=pl.col("avoided") * pl.col("per_unit"))
        .select(TRUTH_COLUMNS)
        .sort(["tenant", "metric", "date"])
    )
    return out


def ground_truth(scenario: str | Scenario, *, seed: int | None = None) -> pl.DataFrame:
    """The ground truth of a scenario (name, path or loaded), generated without encoding messages.

    The truth does not depend on the fault rates: faults change what devices send, not what happened.
    """
    from simulators.generate import generate_chunks
    from simulators.scenario import load_scenario, with_overrides

    scn = load_scenario(scenario) if isinstance(scenario, str) else scenario
    scn = with_overrides(scn, seed=seed)
    return truth_frame(generate_chunks(scn), scn)


def _rule(scn: Scenario, tenant: str, metric: str) -> tuple[str, str, str, float, bool, float, str]:
    """(tenant, metric, unit, sign, on_actual, kgCO2e per avoided unit, factor_id) of a pilot metric."""
    pilot = scn.registry.pilots[tenant]
    country = scn.registry.cities[pilot.city].country
    p = pilot.params
    if metric in ("energy.active.import", "energy.lighting"):
        ef, fid = factor(f"grid:{country}")
        return tenant, metric, "kWh", 1.0, False, ef, fid
    if metric == "energy.pv.daily":  # generation displaces grid electricity
        ef, fid = factor(f"grid:{country}")
        return tenant, metric, "kWh", 1.0, True, ef, fid
    if metric == "energy.heat":
        scope = p.get("heat_scope")
        if not isinstance(scope, str):
            msg = f"pilot {tenant} has heat meters but no heat_scope in the registry"
            raise ScenarioError(msg)
        ef, fid = factor(scope)
        return tenant, metric, "kWh", 1.0, False, ef, fid
    if metric == "traffic.count.car":
        ef, fid = factor("mode:car_combustion")
        return tenant, metric, "count", 1.0, False, ef * _param(p, "car_trip_km", tenant), fid
    if metric == "passengers.count.bus":
        # an electrified line: every passenger rides the electric bus instead of the modes the
        # registry's replaced_mode_shares name (bus_diesel for the Helsinki pilot), as the processors do
        shares = p.get("replaced_mode_shares")
        if not isinstance(shares, dict):
            msg = f"pilot {tenant} counts bus passengers but has no replaced_mode_shares in the registry"
            raise ScenarioError(msg)
        replaced = [(float(s), *factor(f"mode:{m}")) for m, s in sorted(shares.items())]
        electric, e_id = factor("mode:bus_electric")
        per = _param(p, "bus_trip_km", tenant) * (sum(s * ef for s, ef, _ in replaced) - electric)
        fid = "+".join(f"{s:g}*{fid}" for s, _, fid in replaced) + f"-{e_id}"
        return tenant, metric, "count", 1.0, True, per, fid
    if metric.startswith("trip.distance."):
        mode = metric.rsplit(".", 1)[1]
        shares = p.get("replaced_mode_shares")
        if not isinstance(shares, dict):
            msg = f"pilot {tenant} has shared trips but no replaced_mode_shares in the registry"
            raise ScenarioError(msg)
        replaced = [(float(s), *factor(f"mode:{m}")) for m, s in sorted(shares.items())]
        new_ef, new_id = factor(f"mode:{mode}")
        per = sum(s * ef for s, ef, _ in replaced) - new_ef
        fid = "+".join(f"{s:g}*{fid}" for s, _, fid in replaced) + f"-{new_id}"
        return tenant, metric, "km", 1.0, True, per, fid
    return tenant, metric, _unit(metric), -1.0, False, 0.0, ""


def _param(params: dict[str, object], name: str, tenant: str) -> float:
    value = params.get(name)
    if not isinstance(value, int | float):
        msg = f"pilot {tenant} needs the parameter {name} in the registry"
        raise ScenarioError(msg)
    return float(value)


def _unit(metric: str) -> str:
    from pilotstream.vocab import METRICS

    return METRICS[metric].unit


NOTES = __doc__ or ""
