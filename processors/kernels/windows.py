"""Tumbling windows (15 min, 1 h) over cleaned readings, with coverage.

Attribution: a counter or delta reading at ``ts`` reports the interval that *ends* at ``ts``, so it
belongs to the window containing ``ts - 1 ms``; a gauge reading to the window containing ``ts``.
Counters and deltas sum their amounts; gauges average them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from processors.kernels import flags as qf

WIDTHS_S: tuple[int, ...] = (900, 3600)

WINDOW_SCHEMA: dict[str, pl.DataType] = {
    "tenant": pl.String(),
    "device_id": pl.String(),
    "metric": pl.String(),
    "kind": pl.String(),
    "width_s": pl.Int64(),
    "bucket_start_ms": pl.Int64(),
    "actual": pl.Float64(),
    "n_readings": pl.Int64(),
    "coverage": pl.Float64(),
    "flags": pl.Int64(),
}
WINDOW_KEY = ["width_s", "device_id", "metric", "bucket_start_ms"]


def bucket_start(width_s: int) -> pl.Expr:
    """Start (UTC ms) of the ``width_s`` window a reading belongs to (see module doc)."""
    width_ms = width_s * 1000
    t_eff = pl.col("ts_ms") - (pl.col("kind") != "gauge").cast(pl.Int64)
    return (t_eff // width_ms) * width_ms


def aggregate(
    cleaned: pl.DataFrame, width_s: int, *, min_coverage: float = 0.8, presorted: bool = False
) -> pl.DataFrame:
    """One row per (device, metric, window) with actual, reading count, coverage and OR-ed flags.

    The readings of one window are contiguous once sorted by (device, metric, time), so windows
    are runs and reduce with ``np.add.reduceat`` (no hash grouping).

    Args:
        cleaned: output of :func:`processors.kernels.clean.clean` (rows with a null amount, the
            first counter reading of a key, are ignored).
        width_s: window width in seconds.
        min_coverage: windows below it get the LOW_COVERAGE flag.
        presorted: ``cleaned`` is already sorted by (device_id, metric, ts_ms).
    """
    width_ms = width_s * 1000
    rows = cleaned.filter(pl.col("amount").is_not_null())
    if not presorted:
        rows = rows.sort("device_id", "metric", "ts_ms")
    if rows.is_empty():
        return empty_windows()
    starts_col = rows.select(bucket_start(width_s)).to_series()
    same_key = (
        (rows["device_id"] == rows["device_id"].shift(1))
        & (rows["metric"] == rows["metric"].shift(1))
        & (starts_col == starts_col.shift(1))
    ).fill_null(False)
    begin = np.flatnonzero(~same_key.to_numpy())
    n = np.diff(np.append(begin, rows.height))
    total = np.add.reduceat(rows["amount"].to_numpy(), begin)
    flags = np.bitwise_or.reduceat(rows["flags"].to_numpy(), begin)
    heads = rows.select("tenant", "device_id", "metric", "kind", "interval_ms")[begin]
    gauge = (heads["kind"] == "gauge").to_numpy()
    interval = heads["interval_ms"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    coverage = np.where(np.isnan(interval), 1.0, np.minimum(n * interval / width_ms, 1.0))
    flags = flags | np.where(coverage < min_coverage, qf.LOW_COVERAGE, 0)
    out = heads.drop("interval_ms").with_columns(
        width_s=pl.lit(width_s, pl.Int64),
        bucket_start_ms=starts_col[begin],
        actual=pl.Series(np.where(gauge, total / n, total), dtype=pl.Float64),
        n_readings=pl.Series(n, dtype=pl.Int64),
        coverage=pl.Series(coverage, dtype=pl.Float64),
        flags=pl.Series(flags, dtype=pl.Int64),
    )
    return out.select(list(WINDOW_SCHEMA)).sort(WINDOW_KEY)


def empty_windows() -> pl.DataFrame:
    """A window frame with no rows."""
    return pl.DataFrame(schema=WINDOW_SCHEMA)
