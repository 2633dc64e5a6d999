"""Per-reading cleaning: counter registers to interval amounts, and quality flags.

Input is a frame sorted by (device_id, metric, ts_ms) with duplicates removed (see
:func:`processors.kernels.decode.dedup`). Everything is computed with whole-column numpy/polars
operations; "previous reading" means the previous row of the same (device, metric).

The ``amount`` column is what a window aggregates: the consumption since the previous reading for
counters (null for the first reading of a key, whose predecessor is unknown), the value itself for
deltas and gauges.

:func:`clean_arrays` is the numpy core, shared with :func:`processors.kernels.step`, which keeps
its rows as arrays sorted by integer key codes (:mod:`processors.kernels.keys`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from processors.kernels import flags as qf
from processors.kernels.counters import counter_amounts, neighbour_spikes
from processors.kernels.keys import KEY, index_keys, per_key, same_as_previous

# physical range of gauge metrics, canonical units; counters and deltas must be >= 0
GAUGE_RANGES: dict[str, tuple[float, float]] = {
    "weather.temperature": (-60.0, 60.0),
    "power.active": (-100_000.0, 100_000.0),
}
# bits of :func:`kind_bits`
COUNTER, GAUGE, STUCK_CHECKED = 1, 2, 4


@dataclass(frozen=True, kw_only=True)
class CleanParams:
    """Tuning of the cleaning rules (DOMAIN.md §6)."""

    rollover_margin: float = 0.1  # previous value within this share of the register max = rollover
    reset_factor: float = 20.0  # a wrap or reset consumes at most this x a neighbouring interval
    gap_factor: float = 1.5  # a step longer than this many expected intervals is a gap
    stuck_run: int = 12  # this many equal values in a row = stuck
    stuck_kinds: tuple[str, ...] = ("gauge",)  # kinds checked for stuck values
    spike_iqr: float = 3.0  # spike: amount > median + spike_iqr * IQR
    # delta spike without history: amount > ratio x max(neighbours) + floor (canonical units)
    neighbour_spike_ratio: float = 3.0
    neighbour_spike_floor: float = 10.0
    gauge_ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: GAUGE_RANGES)

    def __post_init__(self) -> None:
        if not 0 < self.rollover_margin < 1:
            msg = f"rollover_margin must be in (0, 1), not {self.rollover_margin}"
            raise ValueError(msg)
        if self.reset_factor <= 1:
            msg = f"reset_factor must be > 1, not {self.reset_factor}"
            raise ValueError(msg)
        if self.stuck_run < 2:
            msg = f"stuck_run must be >= 2, not {self.stuck_run}"
            raise ValueError(msg)


def infer_intervals(frame: pl.DataFrame) -> pl.DataFrame:
    """Expected reporting interval per (device_id, metric): the median positive step, in ms."""
    return (
        frame.sort([*KEY, "ts_ms"])
        .with_columns(step=pl.col("ts_ms").diff().over(KEY))
        .filter(pl.col("step") > 0)
        .group_by(KEY)
        .agg(interval_ms=pl.col("step").median().cast(pl.Int64))
    )


def median_steps(code: np.ndarray, ts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """:func:`infer_intervals` on rows sorted by (code, ts), for the codes where ``wanted``.

    Returns a float per code, NaN where not wanted or without a positive step.
    """
    out = np.full(len(wanted), np.nan)
    if not wanted.any():
        return out
    step = np.diff(ts)
    inside = (step > 0) & (code[1:] == code[:-1]) & wanted[code[1:]]
    steps = pl.DataFrame({"code": code[1:][inside], "step": step[inside]})
    found = steps.group_by("code").agg(pl.col("step").median().cast(pl.Int64))
    out[found["code"].to_numpy()] = found["step"].to_numpy()
    return out


def robust_stats(frame: pl.DataFrame) -> pl.DataFrame:
    """Median and interquartile range of ``amount`` per (device_id, metric), for spike detection."""
    return (
        frame.filter(pl.col("amount").is_not_null())
        .group_by(KEY)
        .agg(
            median=pl.col("amount").median(),
            iqr=pl.col("amount").quantile(0.75, "linear")
            - pl.col("amount").quantile(0.25, "linear"),
        )
    )


def kind_bits(kind: pl.Series, stuck_kinds: Iterable[str]) -> np.ndarray:
    """COUNTER, GAUGE and STUCK_CHECKED bits of each reading's kind."""

    masks: dict[str, np.ndarray] = {}

    def bit(name: str, value: int) -> np.ndarray:
        if name not in masks:  # one comparison per kind name
            masks[name] = (kind == name).fill_null(False).to_numpy()
        return masks[name].astype(np.int8) * np.int8(value)

    bits: np.ndarray = bit("counter", COUNTER) | bit("gauge", GAUGE)
    for k in dict.fromkeys(stuck_kinds):
        bits |= bit(k, STUCK_CHECKED)
    return bits


def gauge_bounds(metric: pl.Series, ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    """(n, 2) lower and upper physical bound per metric (infinite where none is known).

    One comparison per ranged metric present (a handful), not a mapping per row: this runs on
    every step, and ``replace_strict`` with a dict cost more than the rest of a small step.
    """
    out = np.column_stack([np.full(len(metric), -np.inf), np.full(len(metric), np.inf)])
    if not ranges or metric.is_empty():
        return out
    present = set(metric.unique().drop_nulls().to_list())
    for name in present & ranges.keys():
        out[(metric == name).fill_null(False).to_numpy()] = ranges[name]
    return out


def clean_arrays(
    *,
    code: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    kinds: np.ndarray,
    bounds: np.ndarray,
    interval: np.ndarray,
    register_max: np.ndarray,
    params: CleanParams,
) -> tuple[np.ndarray, np.ndarray]:
    """``amount`` (NaN: none) and ``flags`` (without spikes) of readings sorted by (code, ts).

    Args:
        code: key code of each reading (:mod:`processors.kernels.keys`).
        ts: event time, ms. value: reading value. kinds: :func:`kind_bits`.
        bounds: (keys, 2) physical range of gauges per code.
        interval: expected step per code, ms (NaN: unknown).
        register_max: known register maximum per code (NaN: infer from the digit width).
        params: cleaning rules.
    """
    p = params
    n = len(ts)
    first = ~same_as_previous(code)
    prev = np.roll(value, 1)
    counter = (kinds & COUNTER) != 0

    # counters: consumption since the last good reading; glitch, rollover or reset
    amount, flags = counter_amounts(
        code=code,
        value=value,
        counter=counter,
        first=first,
        register_max=register_max,
        rollover_margin=p.rollover_margin,
        reset_factor=p.reset_factor,
    )

    # deltas: a one-reading spike far above both neighbours
    delta = (kinds & (COUNTER | GAUGE)) == 0
    spike = neighbour_spikes(code, value, delta, p.neighbour_spike_ratio, p.neighbour_spike_floor)
    flags[spike] |= qf.SPIKE

    # range by kind: counters and deltas are non-negative, gauges per metric
    out_of_range = value < 0
    gauge = np.flatnonzero((kinds & GAUGE) != 0)
    if len(gauge):
        g_value, g_code = value[gauge], code[gauge]
        out_of_range[gauge] = (g_value < bounds[g_code, 0]) | (g_value > bounds[g_code, 1])
    flags[out_of_range] |= qf.OUT_OF_RANGE

    # gaps: a step longer than gap_factor expected intervals
    expected = interval.take(code)
    with np.errstate(invalid="ignore"):
        gap = ~first & (expected > 0) & ((ts - np.roll(ts, 1)) > p.gap_factor * expected)
    flags[gap] |= qf.GAP

    # stuck: stuck_run equal values in a row; a stuck reading is a checked one (gauges by
    # default) equal to its predecessor, so without one there is nothing to count
    same = ~first & (value == prev)
    checked = (kinds & STUCK_CHECKED) != 0
    if p.stuck_run <= 1 or (same & checked).any():
        position = np.arange(n)
        run_start = np.maximum.accumulate(np.where(same, 0, position)) if n else position
        flags[checked & (position - run_start >= p.stuck_run - 1)] |= qf.STUCK
    return amount, flags


def spike_flags(amount: np.ndarray, median: np.ndarray, iqr: np.ndarray, k: float) -> np.ndarray:
    """SPIKE where the amount exceeds median + k IQR of its key (NaN statistics: never)."""
    with np.errstate(invalid="ignore"):
        spike = (iqr > 0) & (amount > median + k * iqr)
    return np.where(spike, qf.SPIKE, 0)


def clean(
    frame: pl.DataFrame,
    *,
    intervals: pl.DataFrame | None = None,
    register_max: pl.DataFrame | None = None,
    reference: pl.DataFrame | None = None,
    params: CleanParams | None = None,
) -> pl.DataFrame:
    """Add ``amount``, ``interval_ms`` and ``flags`` to a sorted, de-duplicated reading frame.

    Args:
        frame: readings sorted by (device_id, metric, ts_ms); columns of ``decode.READING_SCHEMA``.
        intervals: (device_id, metric, interval_ms) expected steps; inferred from ``frame``
            for keys it lacks.
        register_max: (device_id, metric, register_max) known register maxima; otherwise inferred
            from the previous value's digit width.
        reference: (device_id, metric, median, iqr) from history for spike detection; computed from
            ``frame`` when None.
        params: cleaning rules.
    """
    p = params or CleanParams()
    index = index_keys(frame)
    code = index.codes[0]
    ts = frame["ts_ms"].to_numpy()
    given = per_key(index, intervals, "interval_ms").cast(pl.Float64).fill_null(np.nan).to_numpy()
    interval = np.where(np.isnan(given), median_steps(code, ts, np.isnan(given)), given)
    known_max = per_key(index, register_max, "register_max")
    amount, flags = clean_arrays(
        code=code,
        ts=ts,
        value=frame["value"].to_numpy(),
        kinds=kind_bits(frame["kind"], p.stuck_kinds),
        bounds=gauge_bounds(index.keys["metric"], p.gauge_ranges),
        interval=interval,
        register_max=known_max.cast(pl.Float64).fill_null(np.nan).to_numpy(),
        params=p,
    )
    if reference is None:
        with_amount = frame.select(KEY).with_columns(amount=pl.Series(amount).fill_nan(None))
        reference = robust_stats(with_amount)
    median = per_key(index, reference, "median").cast(pl.Float64).fill_null(np.nan).to_numpy()
    iqr = per_key(index, reference, "iqr").cast(pl.Float64).fill_null(np.nan).to_numpy()
    flags |= spike_flags(amount, median[code], iqr[code], p.spike_iqr)
    interval_ms = pl.Series("interval_ms", interval[code]).fill_nan(None).cast(pl.Int64)
    return frame.drop("interval_ms", strict=False).with_columns(
        interval_ms,
        amount=pl.Series(amount, dtype=pl.Float64).fill_nan(None),
        flags=pl.Series(flags, dtype=pl.Int64),
    )
