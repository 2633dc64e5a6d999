"""Per-reading cleaning: counter registers to interval amounts, and quality flags.

Input is a frame sorted by (device_id, metric, ts_ms) with duplicates removed (see
:func:`processors.kernels.decode.dedup`). Everything is computed with whole-column numpy/polars
operations; "previous reading" means the previous row of the same (device, metric).

The ``amount`` column is what a window aggregates: the consumption since the previous reading for
counters (null for the first reading of a key, whose predecessor is unknown), the value itself for
deltas and gauges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from processors.kernels import flags as qf

KEY = ["device_id", "metric"]

# physical range of gauge metrics, canonical units; counters and deltas must be >= 0
GAUGE_RANGES: dict[str, tuple[float, float]] = {
    "weather.temperature": (-60.0, 60.0),
    "power.active": (-100_000.0, 100_000.0),
}


@dataclass(frozen=True, kw_only=True)
class CleanParams:
    """Tuning of the cleaning rules (DOMAIN.md §6)."""

    rollover_margin: float = 0.1  # previous value within this share of the register max = rollover
    gap_factor: float = 1.5  # a step longer than this many expected intervals is a gap
    stuck_run: int = 12  # this many equal values in a row = stuck
    stuck_kinds: tuple[str, ...] = ("gauge",)  # kinds checked for stuck values
    spike_iqr: float = 3.0  # spike: amount > median + spike_iqr * IQR
    gauge_ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: GAUGE_RANGES)

    def __post_init__(self) -> None:
        if not 0 < self.rollover_margin < 1:
            msg = f"rollover_margin must be in (0, 1), not {self.rollover_margin}"
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


def register_max_of(prev: np.ndarray) -> np.ndarray:
    """Register maximum inferred from a value: the next power of ten (fixed digit width)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 ** (np.floor(np.log10(prev)) + 1.0)
    return np.where(prev > 0, out, np.nan)


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
    df = _with_intervals(frame, intervals)
    if register_max is not None:
        df = df.join(
            register_max.select([*KEY, "register_max"]), on=KEY, how="left", maintain_order="left"
        )
    else:
        df = df.with_columns(register_max=pl.lit(None, pl.Float64))

    first = (
        (pl.col("device_id") != pl.col("device_id").shift())
        | (pl.col("metric") != pl.col("metric").shift())
    ).fill_null(True)
    is_first = df.select(first).to_series().to_numpy()
    ts = df["ts_ms"].to_numpy()
    value = df["value"].to_numpy()
    kind = df["kind"].to_numpy()
    prev = np.roll(value, 1)
    prev_ts = np.roll(ts, 1)
    counter = kind == "counter"
    gauge = kind == "gauge"
    flags = np.zeros(df.height, dtype=np.int64)

    # counters: consumption since the previous reading, rollover vs reset
    diff = value - prev
    went_down = counter & ~is_first & (diff < 0)
    known_max = df["register_max"].fill_null(np.nan).to_numpy()
    reg_max = np.where(np.isnan(known_max), register_max_of(prev), known_max)
    rollover = went_down & (prev >= (1.0 - p.rollover_margin) * reg_max)
    reset = went_down & ~rollover
    consumption = np.where(rollover, reg_max - prev + value, np.where(reset, value, diff))
    amount = np.where(counter, np.where(is_first, np.nan, consumption), value)
    flags |= np.where(rollover, qf.ROLLOVER | qf.NEGATIVE, 0)
    flags |= np.where(reset, qf.RESET | qf.NEGATIVE, 0)

    # range by kind: counters and deltas are non-negative, gauges per metric
    lo, hi = _gauge_bounds(df["metric"], p.gauge_ranges)
    out_of_range = np.where(gauge, (value < lo) | (value > hi), value < 0)
    flags |= np.where(out_of_range, qf.OUT_OF_RANGE, 0)

    # gaps: a step longer than gap_factor expected intervals
    interval = df["interval_ms"].fill_null(0).to_numpy()
    gap = ~is_first & (interval > 0) & ((ts - prev_ts) > p.gap_factor * interval)
    flags |= np.where(gap, qf.GAP, 0)

    # stuck: stuck_run equal values in a row
    same = ~is_first & (value == prev)
    run_start = np.maximum.accumulate(np.where(~same, np.arange(df.height), 0))
    stuck = np.isin(kind, p.stuck_kinds) & (np.arange(df.height) - run_start >= p.stuck_run - 1)
    flags |= np.where(stuck, qf.STUCK, 0)

    df = df.with_columns(
        amount=pl.Series(amount, dtype=pl.Float64).fill_nan(None),
        flags=pl.Series(flags, dtype=pl.Int64),
    )
    return _flag_spikes(df, reference, p.spike_iqr).drop("register_max")


def _with_intervals(frame: pl.DataFrame, intervals: pl.DataFrame | None) -> pl.DataFrame:
    if intervals is None:
        inferred = infer_intervals(frame)
    else:
        given = intervals.select([*KEY, "interval_ms"]).cast({"interval_ms": pl.Int64})
        unknown = frame.select(KEY).join(given, on=KEY, how="anti")
        inferred = given
        if unknown.height:  # infer only the keys the caller did not give
            rest = infer_intervals(frame.join(unknown.unique(), on=KEY, how="semi"))
            inferred = pl.concat([given, rest])
    if "interval_ms" in frame.columns:
        frame = frame.drop("interval_ms")
    return frame.join(inferred, on=KEY, how="left", maintain_order="left")


def _gauge_bounds(
    metric: pl.Series, ranges: dict[str, tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    lo = metric.replace_strict({k: v[0] for k, v in ranges.items()}, default=-np.inf)
    hi = metric.replace_strict({k: v[1] for k, v in ranges.items()}, default=np.inf)
    return lo.cast(pl.Float64).to_numpy(), hi.cast(pl.Float64).to_numpy()


def _flag_spikes(df: pl.DataFrame, reference: pl.DataFrame | None, k: float) -> pl.DataFrame:
    stats = robust_stats(df) if reference is None else reference.select([*KEY, "median", "iqr"])
    if stats.is_empty():
        return df
    spike = (
        (pl.col("iqr") > 0) & (pl.col("amount") > pl.col("median") + k * pl.col("iqr"))
    ).fill_null(False)
    return (
        df.join(stats, on=KEY, how="left", maintain_order="left")
        .with_columns(flags=pl.col("flags") | pl.when(spike).then(qf.SPIKE).otherwise(0))
        .drop("median", "iqr")
    )
