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

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from pilotstream.registry import City, Pilot
from processors.factors import FactorTable
from processors.kernels import flags as qf
from processors.kernels.keys import changes

Saving = Literal["baseline_minus_actual", "actual"]
_START_BITS = 42  # a (rule, window start) pair packs as rule << 42 | (start - min start)
_START_MASK = 2**_START_BITS - 1
_QUARTER_MS = 900_000
_DENSE_PAIRS = 65_536  # at most this many (rule, quarter) cells get a dense table
_SHIFT_MODES = {"trip.distance.escooter": "escooter", "trip.distance.ebike": "ebike"}
EVENT_METRICS = frozenset(_SHIFT_MODES)  # reported per event (trip end), not at a fixed interval
EVENT_MASKING = qf.MASKING & ~(qf.LOW_COVERAGE | qf.GAP)


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
    rule = _rule_index(windows["metric"], rules)
    factor, known, factor_id = _window_factors(windows, rule, rules, factors)
    return pl.DataFrame(
        {
            "factor": pl.Series(factor, dtype=pl.Float64).scatter(np.flatnonzero(~known), None),
            "factor_id": factor_id,
        }
    )


def _window_factors(
    windows: pl.DataFrame,
    rule: np.ndarray,
    rules: Mapping[str, MetricRule],
    factors: FactorTable,
) -> tuple[np.ndarray, np.ndarray, pl.Series]:
    """Factor (NaN where unknown), whether it is known, and factor id of each window."""
    # windows of many devices share (metric, start): compute each pair once
    pair, distinct_rule, distinct_start = _distinct_pairs(
        rule, windows["bucket_start_ms"].to_numpy(), len(rules)
    )
    terms = [r.terms for r in rules.values()]
    factor, factor_id = _pair_factors(
        [terms[m] if m >= 0 else None for m in distinct_rule.tolist()],
        distinct_start.tolist(),
        factors,
    )
    known = np.array([f is not None for f in factor], dtype=bool)
    values = np.array([np.nan if f is None else f for f in factor], dtype=np.float64)
    ids = pl.Series(factor_id, dtype=pl.String)
    if len(set(zip(factor, factor_id, strict=True))) == 1:  # one factor for all: no gathers
        n = len(pair)
        return np.full(n, values[0]), np.full(n, known[0]), ids.new_from_index(0, n)
    return values[pair], known[pair], ids.gather(pair)


def _distinct_pairs(
    rule: np.ndarray, start: np.ndarray, n_rules: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each window's (rule, start) pair as a position among the distinct pairs, and their rule
    and start (rule -1: windows without a rule, one pair whatever their start).

    Window starts are whole quarters a few hours apart: a pair is then a small integer (rule,
    quarter) and the distinct ones are marked in a dense table, without hashing or sorting.
    """
    ruled = rule >= 0
    if not ruled.any():
        return np.zeros(len(rule), dtype=np.int64), np.array([-1]), np.array([0])
    every = bool(ruled.all())  # the usual case: no masks
    low = int((start if every else start[ruled]).min())
    quarter = (start - low) // _QUARTER_MS
    span = int((quarter if every else quarter[ruled]).max()) + 1
    if n_rules * span <= _DENSE_PAIRS and np.array_equal(quarter * _QUARTER_MS, start - low):
        code = rule * span + quarter + 1 if every else np.where(ruled, rule * span + quarter + 1, 0)
        seen = np.zeros(n_rules * span + 1, dtype=bool)  # code 0: no rule
        seen[code] = True
        pair = (np.cumsum(seen) - 1)[code]
        distinct = np.flatnonzero(seen) - 1
        return (
            pair,
            np.where(distinct >= 0, distinct // span, -1),
            np.where(distinct >= 0, distinct % span * _QUARTER_MS + low, 0),
        )
    if int(start[ruled].max()) - low < 2**_START_BITS:
        packed = np.where(ruled, (rule << _START_BITS) | (start - low), -1)
        keys = np.sort(pl.Series(packed).unique().to_numpy())
        return (
            np.searchsorted(keys, packed),
            keys >> _START_BITS,
            (keys & _START_MASK) + low,
        )
    # starts too far apart to pack
    pairs = pl.DataFrame({"_m": rule, "_t": start})
    unique = pairs.unique(maintain_order=True).with_row_index("_u")
    joined = pairs.join(unique, on=["_m", "_t"], how="left", maintain_order="left")
    return joined["_u"].cast(pl.Int64).to_numpy(), unique["_m"].to_numpy(), unique["_t"].to_numpy()


Terms = tuple[tuple[str, float], ...]  # (factor scope, weight) of a rule
Factor = tuple[float | None, str]  # factor (None: unknown scope) and factor id
_PAIRS: dict[int, tuple[weakref.ref[FactorTable], np.ndarray, dict[tuple[Terms, int], Factor]]]
_PAIRS = {}
_PAIRS_MAX = 100_000  # cached (terms, validity segment) pairs per factor table


def _pair_factors(
    terms: list[Terms | None], starts: list[int], factors: FactorTable
) -> tuple[list[float | None], list[str]]:
    """Factor (None: a scope without factor) and factor id of each (rule terms, start) pair.

    A factor lookup only changes where a validity period of the table starts or ends, so pairs
    are cached per factor table by (terms, segment between those edges): a processor looks up
    the factors of a new window start once per year of an annual table, not once per poll.
    """
    entry = _PAIRS.get(id(factors))
    if entry is None or entry[0]() is not factors:
        for key in [k for k, (ref, _, _) in _PAIRS.items() if ref() is None]:
            del _PAIRS[key]  # tables gone
        bounds = factors.frame.select(edge=pl.concat_list("valid_from_ms", "valid_to_ms"))
        edges = np.sort(bounds["edge"].explode().drop_nulls().unique().to_numpy())
        entry = (weakref.ref(factors), edges, {})
        _PAIRS[id(factors)] = entry
    _, edges, cache = entry
    segments = np.searchsorted(edges, starts, side="right").tolist() if starts else []
    missing: dict[tuple[Terms, int], int] = {}  # pair -> a start in its segment
    for t, s, g in zip(terms, starts, segments, strict=True):
        if t is not None and (t, g) not in cache:
            missing.setdefault((t, g), s)
    if missing:
        if len(cache) + len(missing) > _PAIRS_MAX:
            cache.clear()
        found = _look_up([(t, s) for (t, _), s in missing.items()], factors)
        cache.update(zip(missing, found, strict=True))
    factor: list[float | None] = []
    factor_id: list[str] = []
    for t, g in zip(terms, segments, strict=True):
        f, i = (None, "") if t is None else cache[(t, g)]
        factor.append(f)
        factor_id.append(i)
    return factor, factor_id


def _look_up(pairs: list[tuple[Terms, int]], factors: FactorTable) -> list[Factor]:
    """``sum(weight_i * EF(scope_i, start))`` and the factor id of each (terms, start) pair."""
    exploded = pl.DataFrame(
        [(k, scope, w, start) for k, (terms, start) in enumerate(pairs) for scope, w in terms],
        schema={"_k": pl.Int64, "scope": pl.String, "weight": pl.Float64, "_t": pl.Int64},
        orient="row",
    )
    found = factors.lookup(exploded["scope"], exploded["_t"].to_numpy())
    per_term = pl.concat([exploded, found], how="horizontal")
    per_key = per_term.group_by("_k").agg(
        factor=pl.when(pl.col("factor").is_not_null().all()).then(
            (pl.col("weight") * pl.col("factor")).sum()
        ),
        factor_id=pl.when(pl.len() == 1)
        .then(pl.col("factor_id").first())
        .otherwise(pl.format("{}*{}", "factor_id", pl.col("weight").round(4)).str.join("+")),
    )
    out: list[Factor] = [(None, "")] * len(pairs)
    for k, f, i in per_key.iter_rows():  # one row per pair, a handful per poll
        out[k] = (f, i or "")
    return out


def emission_deltas(
    windows: pl.DataFrame, *, rules: Mapping[str, MetricRule], factors: FactorTable
) -> pl.DataFrame:
    """Add ``delta``, ``factor``, ``factor_id``, ``avoided_co2e_kg`` and ``masked`` to windows.

    ``windows`` needs ``metric``, ``bucket_start_ms``, ``actual``, ``baseline`` (may be null for
    ``actual`` rules) and ``flags``. A window is masked (delta and avoided set to 0) when its flags
    intersect :data:`flags.MASKING`, its metric has no rule, or its baseline or factor is missing.
    """
    rule = _rule_index(windows["metric"], rules)
    # per rule, then for windows without one: indexed by one scalar when all share a rule
    at = rule[0] if len(rule) and rule.min() == rule.max() else rule
    saving = np.array([_SAVINGS[r.saving] for r in rules.values()] + [_NO_RULE])[at]
    on_actual = saving == _SAVINGS["actual"]
    actual = windows["actual"].cast(pl.Float64)
    baseline = windows["baseline"].cast(pl.Float64)
    actual_values = actual.to_numpy()  # NaN where null (those windows are masked)
    raw = np.where(on_actual, actual_values, baseline.to_numpy() - actual_values)
    known = np.where(
        on_actual,
        _not_null(actual),
        (saving == _SAVINGS["baseline_minus_actual"]) & _not_null(actual) & _not_null(baseline),
    )
    factor, factor_known, factor_id = _window_factors(windows, rule, rules, factors)
    # sparse events (trips) have no expected rate: coverage and gaps say nothing about them
    # (a window without a rule is masked anyway, so its rule's metric decides)
    bits = [EVENT_MASKING if m in EVENT_METRICS else qf.MASKING for m in rules]
    mask_bits = np.array([*bits, qf.MASKING])[at]
    flags = windows["flags"]
    masked = (
        (((flags.fill_null(0) if flags.null_count() else flags).to_numpy() & mask_bits) != 0)
        | ~known
        | ~factor_known
    )
    delta = np.where(masked, 0.0, raw)
    factor_values = np.where(factor_known, factor, 0.0)
    return windows.with_columns(
        factor=pl.Series(factor_values, dtype=pl.Float64),
        factor_id=factor_id,
        masked=pl.Series(masked, dtype=pl.Boolean),
        delta=pl.Series(delta, dtype=pl.Float64),
        avoided_co2e_kg=pl.Series(delta * factor_values, dtype=pl.Float64),
    )


_SAVINGS = {"baseline_minus_actual": 0, "actual": 1}
_NO_RULE = -1


def _not_null(column: pl.Series) -> np.ndarray | bool:
    """Where a column has a value (True when it has no nulls, without a pass over it)."""
    return column.is_not_null().to_numpy() if column.null_count() else True


def _rule_index(metric: pl.Series, rules: Mapping[str, MetricRule]) -> np.ndarray:
    """Position of each metric's rule in ``rules`` (-1: no rule).

    A poll's windows mostly share one metric: the first window's metric is compared with every
    window at once (against a constant, cheaper than comparing neighbours), and only the other
    windows are looked up once per run of equal metrics.
    """
    positions = {m: i for i, m in enumerate(rules)}
    first = metric[0] if len(metric) else None
    if first is None:
        return _rule_of_runs(metric, positions)
    others = np.flatnonzero(~(metric == first).fill_null(False).to_numpy())
    out = np.full(len(metric), positions.get(first, -1), dtype=np.int64)
    if len(others):
        out[others] = _rule_of_runs(metric.gather(others), positions)
    return out


def _rule_of_runs(metric: pl.Series, positions: Mapping[str, int]) -> np.ndarray:
    """Position of each metric in ``positions`` (-1: none), looked up once per run."""
    n = len(metric)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(changes(metric))
    if len(starts) <= _FEW_RUNS:  # a handful of metrics per poll: a dict beats a join
        heads = np.array([positions.get(m, -1) for m in metric.gather(starts).to_list()])
    else:
        heads = (
            metric.gather(starts)
            .replace_strict(positions, default=-1, return_dtype=pl.Int64)
            .to_numpy()
        )
    return np.repeat(heads.astype(np.int64), np.diff(np.append(starts, n)))


_FEW_RUNS = 64


def _shares(raw: object) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): float(v) for k, v in raw.items()}
