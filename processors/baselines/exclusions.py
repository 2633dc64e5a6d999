"""Interventions and non-routine events cut baseline and reporting periods.

A period is a row of (``device_id`` or null for the whole pilot, ``start_ms``, ``end_ms``,
``kind``): a device swap or a declared non-routine event excludes its time from fitting and flags
reporting windows that overlap it.
"""

from __future__ import annotations

import numpy as np
import polars as pl

PERIOD_SCHEMA: dict[str, pl.DataType] = {
    "device_id": pl.String(),  # null: every device of the pilot
    "start_ms": pl.Int64(),  # UTC ms, inclusive
    "end_ms": pl.Int64(),  # UTC ms, exclusive
    "kind": pl.String(),  # device_swap | non_routine | intervention ...
}
DAY_MS = 86_400_000


def no_periods() -> pl.DataFrame:
    """An empty period frame."""
    return pl.DataFrame(schema=PERIOD_SCHEMA)


def excluded_mask(
    frame: pl.DataFrame, periods: pl.DataFrame, *, width_ms: int | pl.Expr = 0
) -> np.ndarray:
    """True for rows of ``frame`` (``device_id``, ``ts_ms``) overlapping an excluded period.

    A row covers ``[ts_ms, ts_ms + width_ms)``; with ``width_ms = 0`` it is an instant.
    The loop runs over periods (a handful per pilot), never over rows.
    """
    mask = np.zeros(frame.height, dtype=bool)
    ts = frame["ts_ms"].to_numpy()
    width = (
        frame.select(width_ms).to_series().to_numpy() if isinstance(width_ms, pl.Expr) else width_ms
    )
    end = ts + np.maximum(width, 1)  # an instant covers its own millisecond
    dev = frame["device_id"].to_numpy()
    for device, start, stop, _ in periods.iter_rows():
        hit = (end > start) & (ts < stop)
        mask |= hit if device is None else hit & (dev == device)
    return mask


def drop_excluded(frame: pl.DataFrame, periods: pl.DataFrame) -> pl.DataFrame:
    """``frame`` without the rows inside excluded periods."""
    if periods.is_empty():
        return frame
    return frame.filter(pl.Series(~excluded_mask(frame, periods)))


def periods_in(periods: pl.DataFrame, start_ms: int, end_ms: int) -> tuple[tuple[int, int], ...]:
    """The excluded periods overlapping ``[start_ms, end_ms)``, clipped, as (start, end) pairs."""
    rows = periods.filter((pl.col("end_ms") > start_ms) & (pl.col("start_ms") < end_ms))
    return tuple(
        (max(int(a), start_ms), min(int(b), end_ms))
        for a, b in rows.select("start_ms", "end_ms").unique().sort("start_ms").iter_rows()
    )


def baseline_period(intervention_ms: int, *, days: int = 365) -> tuple[int, int]:
    """The ``days`` before an intervention (CalTRACK: 365), half-open UTC ms."""
    return intervention_ms - days * DAY_MS, intervention_ms
