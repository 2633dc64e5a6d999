"""Tumbling windows (15 min, 1 h) over cleaned readings, with coverage.

Attribution: a counter or delta reading at ``ts`` reports the interval that *ends* at ``ts``, so it
belongs to the window containing ``ts - 1 ms``; a gauge reading to the window containing ``ts``.
Counters and deltas sum their amounts; gauges average them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from processors.kernels import flags as qf
from processors.kernels.keys import KEY, run_starts, same_as_previous

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


def bucket_starts(ts: np.ndarray, gauge: np.ndarray, width_s: int) -> np.ndarray:
    """:func:`bucket_start` on arrays (``gauge``: the reading is a gauge)."""
    width_ms = width_s * 1000
    return ((ts - (~gauge).astype(np.int64)) // width_ms) * width_ms


@dataclass(frozen=True, slots=True)
class WindowArrays:
    """Windows as arrays: one entry per (key, window) run of the input rows."""

    head: np.ndarray  # input position of the window's first reading
    bucket_start_ms: np.ndarray  # window start, UTC ms
    actual: np.ndarray  # sum (counters, deltas) or mean (gauges) of the amounts
    n_readings: np.ndarray  # readings in the window
    coverage: np.ndarray  # share of expected readings present, 0..1
    flags: np.ndarray  # OR of the readings' flags, plus LOW_COVERAGE


def window_arrays(
    *,
    code: np.ndarray,
    ts: np.ndarray,
    gauge: np.ndarray,
    amount: np.ndarray,
    flags: np.ndarray,
    interval: np.ndarray,
    width_s: int,
    min_coverage: float,
    since: np.ndarray | None = None,
) -> WindowArrays:
    """Windows of cleaned readings sorted by key then time (rows without an amount left out).

    The readings of one window are contiguous, so windows are runs and reduce with
    ``np.add.reduceat`` (no hash grouping). ``interval`` is the expected step per code, NaN
    where unknown (coverage 1).

    ``since`` (per row; -1 where none) is the time of a counter reading's predecessor: a
    counter's amounts cover ``(since of its first reading, its last reading]``, so a counter
    window's coverage is that span over the width, and a gap inside it loses nothing (the
    register counted through it). Only a gap reaching back over the window's start (its
    consumption partly belongs to the window before) flags the window ``GAP``.
    """
    (out,) = windows_by_width(
        code=code,
        ts=ts,
        gauge=gauge,
        amount=amount,
        flags=flags,
        interval=interval,
        widths_s=(width_s,),
        min_coverage=min_coverage,
        since=since,
    )
    return out


def windows_by_width(
    *,
    code: np.ndarray,
    ts: np.ndarray,
    gauge: np.ndarray,
    amount: np.ndarray,
    flags: np.ndarray,
    interval: np.ndarray,
    widths_s: tuple[int, ...],
    min_coverage: float,
    since: np.ndarray | None = None,
) -> list[WindowArrays]:
    """:func:`window_arrays` for several widths, sharing the per-row work between them."""
    n_rows = len(ts)
    t_eff = ts - (~gauge).astype(np.int64)  # see bucket_start
    new_key = ~same_as_previous(code)
    cleared = None  # flags without GAP where a counter's predecessor is known
    out = []
    for width_s in widths_s:
        width_ms = width_s * 1000
        starts = (t_eff // width_ms) * width_ms
        first = new_key.copy()
        if n_rows > 1:
            first[1:] |= starts[1:] != starts[:-1]
        begin = np.flatnonzero(first)
        n = np.diff(np.append(begin, n_rows))
        spanned = np.zeros(len(begin), dtype=bool) if since is None else since[begin] >= 0
        spans = bool(spanned.any())
        if spans and cleared is None:  # counters: a gap inside a window is no fault
            cleared = np.where(since >= 0, flags & ~qf.GAP, flags)  # type: ignore[operator]
        total = _reduce_runs(np.add, amount, begin, n)
        summed = cleared if spans and cleared is not None else flags
        ored = _reduce_runs(np.bitwise_or, summed, begin, n).astype(np.int64, copy=True)
        bucket = starts.take(begin)
        coverage = None
        if not (spans and spanned.all()):  # counters' coverage is their span instead
            expected = interval.take(code.take(begin))
            with np.errstate(invalid="ignore"):
                coverage = np.where(
                    np.isnan(expected), 1.0, np.minimum(n * expected / width_ms, 1.0)
                )
        if spans:
            assert since is not None
            since_begin = since[begin]
            last = np.append(begin[1:], n_rows) - 1
            span = np.minimum((ts[last] - since_begin) / width_ms, 1.0)
            coverage = span if coverage is None else np.where(spanned, span, coverage)
            gap_first = (flags[begin] & qf.GAP) != 0
            ored[spanned & gap_first & (since_begin < bucket)] |= qf.GAP
        assert coverage is not None
        ored[coverage < min_coverage] |= qf.LOW_COVERAGE
        out.append(
            WindowArrays(
                head=begin,
                bucket_start_ms=bucket,
                actual=_means_of_gauges(total, n, gauge[begin]),
                n_readings=n,
                coverage=coverage,
                flags=ored,
            )
        )
    return out


def _reduce_runs(
    ufunc: np.ufunc, values: np.ndarray, begin: np.ndarray, n: np.ndarray
) -> np.ndarray:
    """``ufunc.reduceat(values, begin)`` for runs of lengths ``n``, the one-row runs copied.

    ``reduceat`` pays per run; most 15-minute windows hold one reading. The longer runs are
    reduced by ``reduceat`` over (start, end) pairs, which reduces the same slices the same way.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=values.dtype)
    out: np.ndarray = values.take(begin)
    longer = np.flatnonzero(n > 1)
    if len(longer) == 0:
        return out
    if len(longer) * 4 > len(begin):  # mostly long runs: one reduceat is as cheap
        return np.asarray(ufunc.reduceat(values, begin))
    bounds = np.empty(2 * len(longer), dtype=np.int64)
    bounds[0::2] = begin[longer]
    bounds[1::2] = begin[longer] + n[longer]
    if bounds[-1] == len(values):  # the last run ends the array: reduceat runs it to the end
        out[longer] = ufunc.reduceat(values, bounds[:-1])[0::2]
    else:
        out[longer] = ufunc.reduceat(values, bounds)[0::2]
    return out


def _means_of_gauges(total: np.ndarray, n: np.ndarray, gauge: np.ndarray) -> np.ndarray:
    """``total / n`` where ``gauge`` (gauges average, counters and deltas sum)."""
    out = total.copy()
    at = np.flatnonzero(gauge)
    out[at] = total[at] / np.maximum(n[at], 1)
    return out


def aggregate(
    cleaned: pl.DataFrame, width_s: int, *, min_coverage: float = 0.8, presorted: bool = False
) -> pl.DataFrame:
    """One row per (device, metric, window) with actual, reading count, coverage and OR-ed flags.

    Args:
        cleaned: output of :func:`processors.kernels.clean.clean` (rows with a null amount, the
            first counter reading of a key, are ignored).
        width_s: window width in seconds.
        min_coverage: windows below it get the LOW_COVERAGE flag.
        presorted: ``cleaned`` is already sorted by (device_id, metric, ts_ms).
    """
    rows = cleaned if presorted else cleaned.sort("device_id", "metric", "ts_ms")
    previous = pl.col("ts_ms").shift().over(KEY)
    rows = rows.with_columns(
        _since=pl.when(pl.col("kind") == "counter").then(previous).fill_null(-1)
    ).filter(pl.col("amount").is_not_null())
    if rows.is_empty():
        return empty_windows()
    first = np.zeros(rows.height, dtype=np.int64)
    first[run_starts(rows)] = 1
    run = np.cumsum(first) - 1
    w = window_arrays(
        code=run,
        ts=rows["ts_ms"].to_numpy(),
        gauge=(rows["kind"] == "gauge").to_numpy(),
        amount=rows["amount"].to_numpy(),
        flags=rows["flags"].to_numpy(),
        interval=rows["interval_ms"].cast(pl.Float64).fill_null(np.nan).to_numpy()[first == 1],
        width_s=width_s,
        min_coverage=min_coverage,
        since=rows["_since"].to_numpy(),
    )
    out = (
        rows.select("tenant", *KEY, "kind")[w.head]
        .with_columns(
            width_s=pl.lit(width_s, pl.Int64),
            bucket_start_ms=pl.Series(w.bucket_start_ms, dtype=pl.Int64),
            actual=pl.Series(w.actual, dtype=pl.Float64),
            n_readings=pl.Series(w.n_readings, dtype=pl.Int64),
            coverage=pl.Series(w.coverage, dtype=pl.Float64),
            flags=pl.Series(w.flags, dtype=pl.Int64),
        )
        .select(list(WINDOW_SCHEMA))
    )
    return out.sort(WINDOW_KEY)


def empty_windows() -> pl.DataFrame:
    """A window frame with no rows."""
    return pl.DataFrame(schema=WINDOW_SCHEMA)
