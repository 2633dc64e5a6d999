"""Tumbling windows (15 min, 1 h) over cleaned readings, with coverage.

Attribution: a counter or delta reading at ``ts`` reports the interval that *ends* at ``ts``, so it
belongs to the window containing ``ts - 1 ms``; a gauge reading to the window containing ``ts``.
Counters and deltas sum their amounts; gauges average them.
"""

from __future__ import annotations

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


def aggregate(cleaned: pl.DataFrame, width_s: int, *, min_coverage: float = 0.8) -> pl.DataFrame:
    """One row per (device, metric, window) with actual, reading count, coverage and OR-ed flags.

    Args:
        cleaned: output of :func:`processors.kernels.clean.clean` (rows with a null amount, the
            first counter reading of a key, are ignored).
        width_s: window width in seconds.
        min_coverage: windows below it get the LOW_COVERAGE flag.
    """
    width_ms = width_s * 1000
    coverage = pl.min_horizontal(
        pl.col("n_readings") * pl.col("interval_ms").cast(pl.Float64) / width_ms, pl.lit(1.0)
    )
    out = (
        cleaned.filter(pl.col("amount").is_not_null())
        .with_columns(bucket_start_ms=bucket_start(width_s))
        .group_by(["device_id", "metric", "bucket_start_ms"])
        .agg(
            pl.col("tenant").first(),
            pl.col("kind").first(),
            total=pl.col("amount").sum(),
            n_readings=pl.len().cast(pl.Int64),
            flags=pl.col("flags").bitwise_or(),
            interval_ms=pl.col("interval_ms").first(),
        )
        .with_columns(
            width_s=pl.lit(width_s, pl.Int64),
            actual=pl.when(pl.col("kind") == "gauge")
            .then(pl.col("total") / pl.col("n_readings"))
            .otherwise(pl.col("total")),
            coverage=coverage.fill_null(1.0),
        )
        .with_columns(
            flags=pl.col("flags")
            | pl.when(pl.col("coverage") < min_coverage).then(qf.LOW_COVERAGE).otherwise(0)
        )
    )
    return out.select(list(WINDOW_SCHEMA)).cast(WINDOW_SCHEMA).sort(WINDOW_KEY)  # type: ignore[arg-type]


def empty_windows() -> pl.DataFrame:
    """A window frame with no rows."""
    return pl.DataFrame(schema=WINDOW_SCHEMA)
