"""Reading faults: gaps, stuck values, spikes, clock skew, unit mistakes, register reset and rollover.

All vectorised over the readings frame (sorted by device, metric, time) with one uniform draw per
reading and one per counter series.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from pilotstream.vocab import UNITS
from simulators.faults.log import empty_log, log_rows

READING_KINDS = ("gap", "stuck", "spike", "clock_skew", "unit_mistake")
SERIES_KINDS = ("register_reset", "rollover")
REGISTERS = ("energy.active.import", "energy.heat")  # cumulative registers (PV daily resets anyway)
STUCK_RUN = 4  # readings per stuck episode
_SERIES = ["device_id", "metric"]


def inject_reading_faults(
    df: pl.DataFrame, rates: Mapping[str, float], rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply reading and series faults; returns (readings as sent, fault log).

    ``df`` must be sorted by (device_id, metric, ts_ms) and carry ``msg_id``. Gap readings are
    removed; the other faults change ``value``, ``ts_ms`` or ``unit`` in place.
    """
    if df.height == 0:
        return df, empty_log()
    df = df.with_columns(_i=pl.int_range(pl.len()).over(_SERIES), _n=pl.len().over(_SERIES))
    df = _series_faults(df, rates, rng)
    df = _draw_kinds(df, rates, rng)
    value, ts = pl.col("value"), pl.col("ts_ms")
    group_scale = value.abs().mean().over(_SERIES) + 1.0
    spike = value + 10.0 * group_scale
    spike = pl.when(pl.col("unit") == "count").then(spike.round(0)).otherwise(spike)
    unit_scale = pl.col("unit").replace_strict(
        {u: s for u, (_, s, _) in UNITS.items()}, default=1.0
    )
    skew_s = pl.Series("_skew", _skews(rng, df.height))
    df = df.with_columns(
        _skew=skew_s,
        _orig=value,
        _held=pl.when(pl.col("_f") == "stuck")
        .then(None)
        .otherwise(value)
        .forward_fill()
        .over(_SERIES),
    ).with_columns(
        value=pl.when(pl.col("_f") == "stuck")
        .then(pl.col("_held"))
        .when(pl.col("_f") == "spike")
        .then(spike)
        .when((pl.col("_f") == "unit_mistake") & (pl.col("unit") == "Wh"))
        .then(value * 1000.0)
        .when(pl.col("_f") == "unit_mistake")
        .then(value * 1000.0 * unit_scale)
        .otherwise(value),
        unit=pl.when((pl.col("_f") == "unit_mistake") & (pl.col("unit") == "Wh"))
        .then(pl.lit("kWh"))
        .otherwise(pl.col("unit")),
        ts_ms=pl.when(pl.col("_f") == "clock_skew").then(ts + pl.col("_skew") * 1000).otherwise(ts),
    )
    detail = (
        pl.when(pl.col("_f") == "gap")
        .then(pl.lit("dropped"))
        .when(pl.col("_f") == "clock_skew")
        .then(pl.format("ts shifted by {} s", pl.col("_skew")))
        .when(pl.col("_f") == "unit_mistake")
        .then(pl.format("sent the Wh number, labelled {}", pl.col("unit")))
        .otherwise(pl.format("{} -> {}", pl.col("_orig"), pl.col("value")))
    )
    # a skewed reading is logged at its true time so it can be matched with the clean feed
    faulty = df.filter(pl.col("_f") != "").with_columns(
        ts_ms=pl.when(pl.col("_f") == "clock_skew").then(ts - pl.col("_skew") * 1000).otherwise(ts)
    )
    log = pl.concat([log_rows(faulty, pl.col("_f"), detail), _series_log(df)])
    out = df.filter(pl.col("_f") != "gap").with_columns(value=pl.col("value").round(6))
    return out.drop([c for c in out.columns if c.startswith("_")]), log


def _draw_kinds(
    df: pl.DataFrame, rates: Mapping[str, float], rng: np.random.Generator
) -> pl.DataFrame:
    """One uniform draw per reading picks at most one kind; ineligible picks become no fault."""
    widths = [rates.get(k, 0.0) / (STUCK_RUN if k == "stuck" else 1) for k in READING_KINDS]
    edges = np.cumsum(widths)
    if edges[-1] > 1.0:
        msg = f"reading fault rates add up to more than 1: {dict(zip(READING_KINDS, widths, strict=True))}"
        raise ValueError(msg)
    pick = np.searchsorted(edges, rng.random(df.height), side="right")
    names = np.array([*READING_KINDS, ""], dtype=object)[pick]
    gauge_or_delta = pl.col("kind").is_in(["gauge", "delta"])
    eligible = (
        pl.when(pl.col("_sf") != "")
        .then(pl.lit(False))  # the reading that shows a reset or wrap keeps it visible
        .when(pl.col("_f").is_in(["stuck", "spike"]))
        .then(gauge_or_delta & (pl.col("_i") > 0))
        .when(pl.col("_f") == "unit_mistake")
        .then(pl.col("metric").is_in(REGISTERS))
        .otherwise(pl.lit(True))
    )
    df = df.with_columns(_f=pl.Series(names.tolist(), dtype=pl.String))
    df = df.with_columns(_f=pl.when(eligible).then(pl.col("_f")).otherwise(pl.lit("")))
    start = (pl.col("_f") == "stuck").cast(pl.Int32)
    in_run = (start.rolling_sum(STUCK_RUN, min_samples=1).over(_SERIES) > 0) & gauge_or_delta
    return df.with_columns(
        _f=pl.when(in_run & (pl.col("_sf") == "")).then(pl.lit("stuck")).otherwise(pl.col("_f"))
    )


def _skews(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clock skews of 1 to 10 minutes either way, whole seconds."""
    skew: np.ndarray = rng.integers(60, 601, n) * rng.choice(np.array([-1, 1]), n)
    return skew


def _series_faults(
    df: pl.DataFrame, rates: Mapping[str, float], rng: np.random.Generator
) -> pl.DataFrame:
    """Register reset or rollover, at most one per counter series, at a uniform position."""
    series = df.filter(pl.col("metric").is_in(REGISTERS) & (pl.col("_i") == 0)).select(
        *_SERIES, "_n"
    )
    u = rng.random(series.height)
    r_reset, r_roll = rates.get("register_reset", 0.0), rates.get("rollover", 0.0)
    kind = np.where(u < r_reset, "register_reset", np.where(u < r_reset + r_roll, "rollover", ""))
    pos = 1 + np.floor(rng.random(series.height) * np.maximum(series["_n"].to_numpy() - 1, 1))
    series = series.select(
        *_SERIES, _sk=pl.Series(kind.tolist(), dtype=pl.String), _sp=pl.Series(pos, dtype=pl.Int64)
    )
    df = df.join(series, on=_SERIES, how="left", maintain_order="left").with_columns(
        _sk=pl.col("_sk").fill_null(""), _sp=pl.col("_sp").fill_null(-1)
    )
    v, i, sp = pl.col("value"), pl.col("_i"), pl.col("_sp")
    v_prev = pl.when(i == sp - 1).then(v).max().over(_SERIES)
    v_at = pl.when(i == sp).then(v).max().over(_SERIES)
    top = (10.0 ** ((v.max().over(_SERIES).clip(lower_bound=1.0) * 10).log10().ceil())).alias("_R")
    delta = ((v_at - v_prev) * 0.5).clip(lower_bound=0.001)
    shift = top - delta - v_prev
    df = df.with_columns(_R=top, _shift=shift, _vprev=v_prev)
    wrapped = (v + pl.col("_shift")) >= pl.col("_R")
    reset = (pl.col("_sk") == "register_reset") & (i >= sp)
    df = df.with_columns(
        value=pl.when(pl.col("_sk") == "rollover")
        .then(((v + pl.col("_shift")) % pl.col("_R")).round(3))
        .when(reset)
        .then((v - pl.col("_vprev")).round(3))
        .otherwise(v),
        _wrap=(pl.col("_sk") == "rollover") & wrapped,
    )
    first_wrap = pl.col("_wrap") & ~pl.col("_wrap").shift(1, fill_value=False).over(_SERIES)
    return df.with_columns(
        _sf=pl.when((pl.col("_sk") == "register_reset") & (i == sp))
        .then(pl.lit("register_reset"))
        .when(first_wrap)
        .then(pl.lit("rollover"))
        .otherwise(pl.lit(""))
    )


def _series_log(df: pl.DataFrame) -> pl.DataFrame:
    rows = df.filter(pl.col("_sf") != "")
    detail = (
        pl.when(pl.col("_sf") == "rollover")
        .then(pl.format("register wraps at {}", pl.col("_R")))
        .otherwise(pl.format("register restarts from 0 after {}", pl.col("_vprev")))
    )
    return log_rows(rows, pl.col("_sf"), detail)
