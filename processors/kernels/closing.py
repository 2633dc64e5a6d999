"""Close windows by watermark, restate changed ones and evict final readings, on sorted arrays.

The event-time kernels (:mod:`processors.kernels.eventtime`) hand over the readings of the keys
a batch touched, as arrays sorted by (key code, time), with each key's watermark. This module
cleans them, builds the windows, compares the closed ones with what was emitted before (a
changed window is restated with revision + 1) and keeps only the readings that may still matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from processors.kernels.clean import (
    COUNTER,
    GAUGE,
    clean_arrays,
    gauge_bounds,
    median_steps,
    spike_flags,
)
from processors.kernels.counters import counter_since, pending_counters
from processors.kernels.keys import (
    find_rows,
    per_key,
    sort_order,
)
from processors.kernels.params import EventTimeParams
from processors.kernels.rows import NO_WATERMARK, SortedRows, buffer_frame, kept_rows
from processors.kernels.windows import WINDOW_SCHEMA, WindowArrays, windows_by_width


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
    hold_counters: bool = True,
) -> Closed:
    """Clean, window, compare with ``emitted`` and evict (``watermark``: per code, ms).

    With ``hold_counters`` (every step but the idle timer's), the window of a counter or delta
    key's last reading stays open until the next reading says whether it was a glitch or spike
    (:mod:`processors.kernels.counters`), unless that reading is already final.
    """
    index, code = rows.index, rows.code
    interval, intervals = freeze_intervals(rows, intervals)
    known_max = per_key(index, register_max, "register_max").cast(pl.Float64).fill_null(np.nan)
    amount, flags = clean_arrays(
        code=code,
        ts=rows.ts,
        value=rows.value,
        kinds=rows.kinds,
        bounds=gauge_bounds(index.keys["metric"], rules.clean.gauge_ranges),
        interval=interval,
        register_max=known_max.to_numpy(),
        params=rules.clean,
    )
    if reference is not None:
        median = per_key(index, reference, "median").cast(pl.Float64).fill_null(np.nan).to_numpy()
        iqr = per_key(index, reference, "iqr").cast(pl.Float64).fill_null(np.nan).to_numpy()
        flags |= spike_flags(amount, median[code], iqr[code], rules.clean.spike_iqr)

    closes_before = watermark
    final = rows.final_end(rules.widest_s) + rules.allowed_lateness_ms < watermark[code]
    if hold_counters:
        delta = (rows.kinds & (COUNTER | GAUGE)) == 0
        waiting = (((rows.kinds & COUNTER) != 0) | delta) & ~rows.anchor & ~final
        closes_before = np.minimum(
            closes_before, pending_counters(code, rows.ts, waiting, index.size)
        )
    live = np.flatnonzero(~rows.anchor & ~np.isnan(amount))
    live_code = code[live]
    since = counter_since(code, rows.ts, (rows.kinds & COUNTER) != 0)[live]
    gauge = (rows.kinds[live] & GAUGE) != 0
    before = _Emitted(emitted, emitted_code)
    parts = []
    widths = tuple(sorted(rules.widths_s))
    by_width = windows_by_width(
        code=live_code,
        ts=rows.ts[live],
        gauge=gauge,
        amount=amount[live],
        flags=flags[live],
        interval=interval,
        widths_s=widths,
        min_coverage=rules.min_coverage,
        since=since,
    )
    for width_s, w in zip(widths, by_width, strict=True):
        head_code = live_code[w.head]
        closed = np.flatnonzero(w.bucket_start_ms + width_s * 1000 < closes_before[head_code])
        part = before.restate(w, closed, head_code[closed], width_s)
        part["head"] = live[part["head"]]
        parts.append(part)
    windows = _window_frame(rows, parts)
    keep = kept_rows(rows, final, rules)
    new_code = windows["_code"].to_numpy()
    windows = windows.drop("_code")
    return Closed(
        buffer=buffer_frame(rows.frame, rows.order[keep], final[keep]),
        emitted=_next_emitted(
            (emitted, emitted_code, ~before.replaced), (windows, new_code), watermark, rules
        ),
        windows=windows,
        intervals=intervals,
    )


class _Emitted:
    """The emitted windows of the touched keys as arrays (null masks where the column may be)."""

    def __init__(self, emitted: pl.DataFrame, code: np.ndarray) -> None:
        def column(name: str, fill: float) -> tuple[np.ndarray, np.ndarray]:
            series = emitted[name]
            if series.null_count() == 0:
                return series.to_numpy(), np.zeros(len(series), dtype=bool)
            return series.fill_null(fill).to_numpy(), series.is_null().to_numpy()

        self.code = code
        self.width = emitted["width_s"].to_numpy()
        self.bucket = emitted["bucket_start_ms"].to_numpy()
        self.actual, _ = column("actual", np.nan)
        self.n, self.n_null = column("n_readings", 0)
        self.flags, self.flags_null = column("flags", 0)
        self.revision, self.revision_null = column("revision", 0)
        self.replaced = np.zeros(emitted.height, dtype=bool)
        self.any_null = bool(self.n_null.any() or self.flags_null.any())

    def restate(
        self, w: WindowArrays, closed: np.ndarray, code: np.ndarray, width_s: int
    ) -> dict[str, np.ndarray]:
        """The closed windows that are new or changed, with their revision; marks what they replace.

        A window changed when it was not emitted, or its reading count, flags or actual differ
        (nulls in the emitted row compare equal).
        """
        bucket = w.bucket_start_ms[closed]
        same_width = np.flatnonzero(self.width == width_s)
        found = find_rows(code, bucket, self.code[same_width], self.bucket[same_width])
        changed = np.ones(len(found), dtype=bool)
        was = np.flatnonzero(found >= 0)
        revision_was = np.zeros(0, dtype=np.int64)
        if len(was):  # compare with the emitted result
            at = same_width[found[was]]
            known = ~self.revision_null[at]
            at_closed = closed[was]
            ours = w.actual[at_closed]
            with np.errstate(invalid="ignore"):
                moved = np.abs(ours - self.actual[at]) > 1e-9 * (1 + np.abs(ours))
            n_differs = self.n[at] != w.n_readings[at_closed]
            flags_differ = self.flags[at] != w.flags[at_closed]
            if self.any_null:  # nulls in the emitted row compare equal
                n_differs &= ~self.n_null[at]
                flags_differ &= ~self.flags_null[at]
            changed[was] = ~known | n_differs | flags_differ | moved
            revision_was = np.where(known, self.revision[at] + 1, 1)
            self.replaced[at[changed[was]]] = True
        revision = np.ones(len(found), dtype=np.int64)
        revision[was] = revision_was
        if not changed.all():  # gather only what is restated
            keep = np.flatnonzero(changed)
            closed, code, bucket, revision = closed[keep], code[keep], bucket[keep], revision[keep]
        return {
            "head": w.head[closed],
            "_code": code,
            "width_s": np.full(len(closed), width_s, dtype=np.int64),
            "bucket_start_ms": bucket,
            "actual": w.actual[closed],
            "n_readings": w.n_readings[closed].astype(np.int64),
            "coverage": w.coverage[closed],
            "flags": w.flags[closed],
            "revision": revision,
        }


def _window_frame(rows: SortedRows, parts: list[dict[str, np.ndarray]]) -> pl.DataFrame:
    """One frame of the restated windows of every width, sorted like ``WINDOW_KEY``."""
    cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    head = cols.pop("head")
    source = rows.frame.select("tenant", "kind")[rows.order[head]]
    keys = rows.index.keys[cols["_code"]]
    out = pl.DataFrame(
        {
            "tenant": source["tenant"],
            "device_id": keys["device_id"],
            "metric": keys["metric"],
            "kind": source["kind"],
            **{name: cols[name] for name in WINDOW_SCHEMA if name in cols},
            "revision": cols["revision"],
            "_code": cols["_code"],
        },
        schema={**WINDOW_SCHEMA, "revision": pl.Int64(), "_code": pl.Int64()},
    )
    width, code, bucket = cols["width_s"], cols["_code"], cols["bucket_start_ms"]
    later = (width[1:] > width[:-1]) | (
        (width[1:] == width[:-1])
        & ((code[1:] > code[:-1]) | ((code[1:] == code[:-1]) & (bucket[1:] > bucket[:-1])))
    )
    return out if later.all() else out.sort("width_s", "_code", "bucket_start_ms")


def _next_emitted(
    old: tuple[pl.DataFrame, np.ndarray, np.ndarray],
    new: tuple[pl.DataFrame, np.ndarray],
    watermark: np.ndarray,
    rules: EventTimeParams,
) -> pl.DataFrame:
    """The emitted windows to keep: the old ones not replaced and the new ones, both while
    their widest window still takes late data, sorted by (key code, width, start).

    ``old`` is (emitted frame, key codes, not replaced); ``new`` is (windows, key codes). The
    rows are picked and ordered on arrays, and the frames gathered once.
    """
    old_frame, old_code, not_replaced = old
    new_frame, new_code = new
    old_at = np.flatnonzero(not_replaced & _retained(old_frame, old_code, watermark, rules))
    new_at = np.flatnonzero(_retained(new_frame, new_code, watermark, rules))
    code = np.concatenate([old_code[old_at], new_code[new_at]])
    width = np.concatenate(
        [old_frame["width_s"].to_numpy()[old_at], new_frame["width_s"].to_numpy()[new_at]]
    )
    bucket = np.concatenate(
        [
            old_frame["bucket_start_ms"].to_numpy()[old_at],
            new_frame["bucket_start_ms"].to_numpy()[new_at],
        ]
    )
    old_frame = old_frame.select(new_frame.columns).cast(new_frame.schema)
    if len(code) == 0:
        return new_frame.clear()
    widths = np.sort(pl.Series(width).unique().to_numpy())
    low = int(bucket.min())
    span = int(bucket.max()) - low + 1
    if len(widths) * span < 2**40:
        order = sort_order(code, np.searchsorted(widths, width) * span + (bucket - low))
    else:
        order = np.lexsort((bucket, width, code))
    if len(old_at) == 0:  # gather from one frame when the other adds nothing
        return new_frame.gather(new_at[order])
    if len(new_at) == 0:
        return old_frame.gather(old_at[order])
    picked = np.concatenate([old_at, old_frame.height + new_at])[order]
    return pl.concat([old_frame, new_frame]).rechunk().gather(picked)


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
        table = pl.concat([table, new.select(table.columns).cast(table.schema)])
    return np.where(np.isnan(frozen), inferred, frozen), table


def _retained(
    windows: pl.DataFrame, code: np.ndarray, watermark: np.ndarray, rules: EventTimeParams
) -> np.ndarray:
    """Windows whose widest window still takes late data (a device without watermark: none)."""
    widest_ms = rules.widest_s * 1000
    bucket = windows["bucket_start_ms"].to_numpy()
    wm = watermark[code]
    keep: np.ndarray = (wm != NO_WATERMARK) & (
        (bucket // widest_ms) * widest_ms + (widest_ms + rules.allowed_lateness_ms) >= wm
    )
    return keep
