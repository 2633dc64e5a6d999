"""Close windows by watermark, restate changed ones and evict final readings, on sorted arrays.

The event-time kernels (:mod:`processors.kernels.eventtime`) hand over the readings of the keys
a batch touched, as arrays sorted by (key code, time), with each key's watermark. This module
cleans them, builds the windows, compares the closed ones with what was emitted before (a
changed window is restated with revision + 1) and keeps only the readings that may still matter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from processors.kernels.clean import (
    GAUGE,
    STUCK_CHECKED,
    clean_arrays,
    gauge_bounds,
    median_steps,
    spike_flags,
)
from processors.kernels.keys import (
    KeyIndex,
    find_rows,
    per_key,
    run_ids,
    same_as_previous,
    sort_order,
)
from processors.kernels.params import EventTimeParams
from processors.kernels.windows import WINDOW_SCHEMA, WindowArrays, bucket_starts, window_arrays

NO_WATERMARK = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class SortedRows:
    """Readings of some keys as arrays sorted by (code, ts), with their source frame."""

    frame: pl.DataFrame  # source rows (reading columns and ``anchor``), any order
    order: np.ndarray  # frame positions, sorted
    index: KeyIndex  # the key codes
    code: np.ndarray  # key code of each sorted row
    ts: np.ndarray  # event time, ms
    value: np.ndarray  # reading value
    kinds: np.ndarray  # clean.kind_bits
    anchor: np.ndarray  # the row was final before this batch (kept as a predecessor)

    def take(self, keep: np.ndarray) -> SortedRows:
        """The rows where ``keep`` is True (still sorted)."""
        return SortedRows(
            frame=self.frame,
            order=self.order[keep],
            index=self.index,
            code=self.code[keep],
            ts=self.ts[keep],
            value=self.value[keep],
            kinds=self.kinds[keep],
            anchor=self.anchor[keep],
        )

    def final_end(self, widest_s: int) -> np.ndarray:
        """End (UTC ms) of each row's widest window."""
        gauge = (self.kinds & GAUGE) != 0
        return bucket_starts(self.ts, gauge, widest_s) + widest_s * 1000


@dataclass(frozen=True, slots=True)
class Closed:
    """What closing produced for the touched keys."""

    buffer: pl.DataFrame  # readings kept, with ``anchor``
    emitted: pl.DataFrame  # emitted windows still within the lateness, sorted by key
    windows: pl.DataFrame  # windows closed for the first time or restated, with ``revision``
    intervals: pl.DataFrame  # the intervals table with the newly inferred keys added


def close(
    rows: SortedRows,
    *,
    watermark: np.ndarray,
    emitted: pl.DataFrame,
    emitted_code: np.ndarray,
    intervals: pl.DataFrame,
    register_max: pl.DataFrame | None,
    reference: pl.DataFrame | None,
    rules: EventTimeParams,
) -> Closed:
    """Clean, window, compare with ``emitted`` and evict (``watermark``: per code, ms)."""
    index, code = rows.index, rows.code
    interval, intervals = freeze_intervals(rows, intervals)
    known_max = per_key(index, register_max, "register_max").cast(pl.Float64).fill_null(np.nan)
    first = ~same_as_previous(code)
    amount, flags = clean_arrays(
        first=first,
        ts=rows.ts,
        value=rows.value,
        kinds=rows.kinds,
        bounds=gauge_bounds(index.keys["metric"], rules.clean.gauge_ranges)[code],
        interval=interval[code],
        register_max=known_max.to_numpy()[code],
        params=rules.clean,
    )
    if reference is not None:
        median = per_key(index, reference, "median").cast(pl.Float64).fill_null(np.nan).to_numpy()
        iqr = per_key(index, reference, "iqr").cast(pl.Float64).fill_null(np.nan).to_numpy()
        flags |= spike_flags(amount, median[code], iqr[code], rules.clean.spike_iqr)

    live = np.flatnonzero(~rows.anchor & ~np.isnan(amount))
    gauge = (rows.kinds & GAUGE) != 0
    parts = []
    replaced = np.zeros(emitted.height, dtype=bool)
    for width_s in sorted(rules.widths_s):
        w = window_arrays(
            code=code,
            ts=rows.ts,
            gauge=gauge,
            amount=amount,
            flags=flags,
            interval=interval[code],
            rows=live,
            width_s=width_s,
            min_coverage=rules.min_coverage,
        )
        closed = w.bucket_start_ms + width_s * 1000 < watermark[code[w.head]]
        part, hit = _restate(rows, w, closed, width_s, emitted, emitted_code)
        replaced[hit] = True
        parts.append(part)
    windows = pl.concat(parts)
    kept = _retain(emitted.filter(~pl.Series(replaced)), emitted_code[~replaced], watermark, rules)
    new = _retain(windows, windows["_code"].to_numpy(), watermark, rules)
    return Closed(
        buffer=buffer_of(evict(rows, watermark, rules)),
        emitted=_by_key(pl.concat([kept.select(new.columns).cast(new.schema), new])),  # type: ignore[arg-type]
        windows=windows.drop("_code"),
        intervals=intervals,
    )


def _by_key(windows: pl.DataFrame) -> pl.DataFrame:
    """Windows sorted by (key code, width, start), without the code column."""
    code = windows["_code"].to_numpy()
    width = windows["width_s"].to_numpy()
    bucket = windows["bucket_start_ms"].to_numpy()
    if len(code) == 0:
        return windows.drop("_code")
    widths = np.sort(pl.Series(width).unique().to_numpy())
    low = int(bucket.min())
    span = int(bucket.max()) - low + 1
    if len(widths) * span < 2**40:
        order = sort_order(code, np.searchsorted(widths, width) * span + (bucket - low))
    else:
        order = np.lexsort((bucket, width, code))
    return windows.drop("_code").rechunk()[order]


def freeze_intervals(rows: SortedRows, table: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame]:
    """Interval per code (frozen, else inferred from the rows) and the table with new keys frozen.

    A key is frozen the first time it has at least 3 readings, one of them not final.
    """
    index = rows.index
    frozen = per_key(index, table, "interval_ms").cast(pl.Float64).fill_null(np.nan).to_numpy()
    inferred = median_steps(rows.code, rows.ts, np.isnan(frozen))
    counts = np.bincount(rows.code, minlength=index.size)
    live = np.bincount(rows.code, weights=~rows.anchor, minlength=index.size)
    freeze = np.isnan(frozen) & ~np.isnan(inferred) & (counts >= 3) & (live > 0)
    if freeze.any():
        new = index.keys.filter(pl.Series(freeze)).with_columns(
            interval_ms=pl.Series(inferred[freeze]).cast(pl.Int64)
        )
        table = pl.concat([table, new.select(table.columns).cast(table.schema)])  # type: ignore[arg-type]
    return np.where(np.isnan(frozen), inferred, frozen), table


def _restate(
    rows: SortedRows,
    w: WindowArrays,
    closed: np.ndarray,
    width_s: int,
    emitted: pl.DataFrame,
    emitted_code: np.ndarray,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Closed windows that are new or differ from their emitted result, and the rows they replace."""
    head = w.head[closed]
    code = rows.code[head]
    bucket = w.bucket_start_ms[closed]
    same_width = (emitted["width_s"] == width_s).to_numpy()
    positions = np.flatnonzero(same_width)
    found = find_rows(
        code, bucket, emitted_code[positions], emitted["bucket_start_ms"].to_numpy()[positions]
    )
    match = positions[found] if len(positions) else found
    match[found < 0] = -1
    at = pl.Series(match).set(pl.Series(found < 0), None)  # type: ignore[arg-type]
    was = emitted.select(pl.col("actual", "n_readings", "flags", "revision").gather(at))
    missing = was["revision"].is_null().to_numpy()
    actual = w.actual[closed]

    def differs(column: str, ours: np.ndarray) -> np.ndarray:
        theirs = was[column]
        return (~theirs.is_null() & (theirs != pl.Series(ours))).to_numpy()

    with np.errstate(invalid="ignore"):
        drift = np.abs(actual - was["actual"].cast(pl.Float64).fill_null(np.nan).to_numpy())
        moved = drift > 1e-9 * (1 + np.abs(actual))
    changed = (
        missing
        | differs("n_readings", w.n_readings[closed])
        | differs("flags", w.flags[closed])
        | moved
    )
    revision = np.where(missing, 1, was["revision"].fill_null(0).to_numpy() + 1)
    pick = np.flatnonzero(changed)
    source = rows.frame.select("tenant", "kind")[rows.order[head[pick]]]
    keys = rows.index.keys[code[pick]]
    out = pl.DataFrame(
        {
            "tenant": source["tenant"],
            "device_id": keys["device_id"],
            "metric": keys["metric"],
            "kind": source["kind"],
            "width_s": np.full(len(pick), width_s, dtype=np.int64),
            "bucket_start_ms": bucket[pick],
            "actual": actual[pick],
            "n_readings": w.n_readings[closed][pick].astype(np.int64),
            "coverage": w.coverage[closed][pick],
            "flags": w.flags[closed][pick],
            "revision": revision[pick].astype(np.int64),
            "_code": code[pick],
        },
        schema={**WINDOW_SCHEMA, "revision": pl.Int64(), "_code": pl.Int64()},
    )
    if not np.all(np.diff(code[pick]) >= 0) or not _ascending_within(code[pick], bucket[pick]):
        out = out.sort("_code", "bucket_start_ms")
    return out, match[changed & (match >= 0)]


def _ascending_within(code: np.ndarray, bucket: np.ndarray) -> bool:
    same = same_as_previous(code)[1:]
    return bool(np.all(~same | (bucket[1:] > bucket[:-1])))


def _retain(
    windows: pl.DataFrame, code: np.ndarray, watermark: np.ndarray, rules: EventTimeParams
) -> pl.DataFrame:
    """Windows whose widest window still takes late data (a device without watermark: none)."""
    widest_ms = rules.widest_s * 1000
    bucket = windows["bucket_start_ms"].to_numpy()
    wm = watermark[code]
    keep = (wm != NO_WATERMARK) & (
        (bucket // widest_ms) * widest_ms + (widest_ms + rules.allowed_lateness_ms) >= wm
    )
    out = windows.filter(pl.Series(keep))
    if "_code" not in out.columns:
        out = out.with_columns(_code=pl.Series(code[keep], dtype=pl.Int64))
    return out


def evict(rows: SortedRows, watermark: np.ndarray, rules: EventTimeParams) -> SortedRows:
    """Drop final readings, keeping the last few per key as anchors (``anchor`` = final).

    Rows are sorted by (key, time) and finality is a time threshold per device, so a key's final
    rows are a prefix of its rows: positions come from array arithmetic.
    """
    final = rows.final_end(rules.widest_s) + rules.allowed_lateness_ms < watermark[rows.code]
    start, key = run_ids(rows.code)
    n_final = np.bincount(key, final, len(start)).astype(np.int64)
    position = np.arange(len(rows.code)) - start[key]
    stuck = (rows.kinds & STUCK_CHECKED) != 0
    keep_n = np.where(stuck, rules.clean.stuck_run - 1, 1)
    keep = ~final | (position >= n_final[key] - keep_n)
    return replace(rows.take(keep), anchor=final[keep])


def buffer_of(rows: SortedRows) -> pl.DataFrame:
    """The rows as a buffer frame (reading columns and ``anchor``), sorted."""
    return rows.frame[rows.order].with_columns(anchor=pl.Series(rows.anchor, dtype=pl.Boolean))
