"""Close windows by watermark, restate changed ones and evict final readings, on sorted arrays.

The event-time kernels (:mod:`processors.kernels.eventtime`) hand over the readings of the keys
a batch touched, as arrays sorted by (key rank, time), with each key's watermark. This module
cleans them, builds the windows, compares the closed ones with what was emitted before (a
changed window is restated with revision + 1) and keeps only the readings that may still matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from processors.kernels.catalog import Catalog
from processors.kernels.clean import (
    COUNTER,
    GAUGE,
    clean_arrays,
    gauge_bounds,
    median_steps,
    spike_flags,
)
from processors.kernels.counters import counter_since, pending_counters
from processors.kernels.keys import find_rows, same_as_previous, sort_order
from processors.kernels.params import EventTimeParams
from processors.kernels.rows import SortedRows, buffer_frame, kept_rows
from processors.kernels.state import EMITTED_SCHEMA, NO_WATERMARK, Coded
from processors.kernels.windows import WINDOW_SCHEMA, WindowArrays, windows_by_width


@dataclass(frozen=True, slots=True)
class Closed:
    """What closing produced for the touched keys."""

    buffer: pl.DataFrame  # readings kept (``state.BUFFER_SCHEMA``)
    emitted: pl.DataFrame  # emitted windows still within the lateness (``state.EMITTED_SCHEMA``)
    windows: pl.DataFrame  # windows closed for the first time or restated, with ``revision``
    interval: np.ndarray  # frozen interval per key code, the newly inferred keys added
    closed_until: np.ndarray  # per key code: windows ending before it are closed
    settled: np.ndarray  # per key code: closed with a frozen interval


def close(
    rows: SortedRows,
    *,
    watermark: np.ndarray,
    emitted: pl.DataFrame,
    coded: Coded,
    rules: EventTimeParams,
    hold_counters: bool = True,
    widest_end: np.ndarray | None = None,
) -> Closed:
    """Clean, window, compare with ``emitted`` and evict (``watermark``: per key code, ms).

    ``coded`` gives the catalog and the per-key tables (intervals, register maxima, reference).
    With ``hold_counters`` (every step but the idle timer's), the window of a counter or delta
    key's last reading stays open until the next reading says whether it was a glitch or spike
    (:mod:`processors.kernels.counters`), unless that reading is already final.
    ``widest_end``: :meth:`SortedRows.final_end` of the rows, when the caller has it.
    """
    catalog, code = coded.catalog, rows.code
    interval, frozen = freeze_intervals(rows, coded.interval)
    gauges = (rows.kinds & GAUGE) != 0
    bounds = (
        gauge_bounds(catalog.keys["metric"], rules.clean.gauge_ranges)
        if gauges.any()
        else np.zeros((0, 2))
    )
    amount, flags = clean_arrays(
        code=code,
        ts=rows.ts,
        value=rows.value,
        kinds=rows.kinds,
        bounds=bounds,
        interval=interval,
        register_max=coded.register_max,
        params=rules.clean,
    )
    if not np.isnan(coded.iqr).all():
        flags |= spike_flags(amount, coded.median[code], coded.iqr[code], rules.clean.spike_iqr)

    closes_before = watermark
    if widest_end is None:
        widest_end = rows.final_end(rules.widest_s)
    final = widest_end + rules.allowed_lateness_ms < watermark.take(code)
    if hold_counters:
        delta = (rows.kinds & (COUNTER | GAUGE)) == 0
        waiting = (((rows.kinds & COUNTER) != 0) | delta) & ~rows.anchor & ~final
        closes_before = np.minimum(
            closes_before, pending_counters(code, rows.ts, waiting, catalog.n_keys)
        )
    since = counter_since(code, rows.ts, (rows.kinds & COUNTER) != 0)
    cleaned_as = cleaning_fingerprint(amount, flags, since)
    live = np.flatnonzero(
        _may_change(rows, ~rows.anchor & ~np.isnan(amount), cleaned_as, widest_end, coded, rules)
    )
    live_code = code.take(live)
    since_live = since.take(live)
    before = _Emitted(emitted, catalog.rank)
    parts = []
    widths = tuple(sorted(rules.widths_s))
    by_width = windows_by_width(
        code=live_code,
        ts=rows.ts.take(live),
        gauge=gauges.take(live),
        amount=amount.take(live),
        flags=flags.take(live),
        interval=interval,
        widths_s=widths,
        min_coverage=rules.min_coverage,
        since=since_live,
    )
    for width_s, w in zip(widths, by_width, strict=True):
        head_code = live_code.take(w.head)
        closed = np.flatnonzero(w.bucket_start_ms + width_s * 1000 < closes_before.take(head_code))
        part = before.restate(w, closed, head_code.take(closed), width_s)
        part["head"] = live.take(part["head"])
        parts.append(part)
    numbers = _window_numbers(rows, parts, catalog.rank)
    keep = kept_rows(rows, final, rules)
    cleaned = np.zeros(catalog.n_keys, dtype=bool)
    cleaned[code] = True
    at = np.flatnonzero(keep)  # one scan of the mask, then gathers
    buffer = buffer_frame(
        rows.frame,
        rows.order.take(at),
        final.take(at),
        cleaned=cleaned_as.take(at),
    )
    still = emitted[np.flatnonzero(~before.replaced)] if before.replaced.any() else emitted
    kept_emitted = _next_emitted(still, numbers, watermark, rules, catalog.rank)
    windows = _window_frame(numbers, catalog)
    return Closed(
        buffer=buffer,
        emitted=kept_emitted,
        windows=windows,
        interval=frozen,
        closed_until=np.where(cleaned, closes_before, coded.closed_until),
        settled=np.where(cleaned, ~np.isnan(coded.interval), coded.settled),
    )


def cleaning_fingerprint(amount: np.ndarray, flags: np.ndarray, since: np.ndarray) -> np.ndarray:
    """How each row cleaned (amount, flags, counter predecessor time) as one odd uint64.

    The buffer keeps it instead of the three columns (8 bytes instead of 18 a row): a row whose
    fingerprint is unchanged cleaned alike, and its windows are not built again. ``since`` and
    ``flags`` share a word injectively (times below 2**53 ms or -1/-2, flags below 2**10), which
    is mixed (splitmix64's finaliser) and XOR-ed with the amount's bits: rows that cleaned
    differently match by chance with probability 2**-63. Never 0 (``state.UNCLEANED``).
    """
    z = flags.astype(np.uint64)
    z <<= np.uint64(53)
    z ^= since.astype(np.int64, copy=False).view(np.uint64)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    missing = np.isnan(amount)
    bits = amount.astype(np.float64, copy=False).view(np.uint64)
    z ^= np.where(missing, _NAN_BITS, bits) if missing.any() else bits  # one NaN, one pattern
    z |= np.uint64(1)
    return z


_NAN_BITS = np.array(np.nan).view(np.uint64)


def _may_change(
    rows: SortedRows,
    live: np.ndarray,
    cleaned_as: np.ndarray,
    widest_end: np.ndarray,
    coded: Coded,
    rules: EventTimeParams,
) -> np.ndarray:
    """``live`` restricted to the rows of widest windows whose results may differ from the last
    close of their key (the others were closed then, and compared equal or were emitted).

    A widest window may change when one of its readings is new or cleans differently now
    (amount, flags or counter predecessor: a neighbour arrived, say; ``cleaned_as``: their
    :func:`cleaning_fingerprint`), when it was still open at
    the key's last close, or when its key's interval was not frozen then (coverage moves with
    an inferred interval). Narrower windows nest in the widest one, so they are all rebuilt
    with it; with widths that do not divide the widest, every window is rebuilt.
    """
    widest_s = rules.widest_s
    if len(rows.code) == 0 or any(widest_s % w for w in rules.widths_s):
        return live
    was = rows.frame["cleaned"].to_numpy().take(rows.order)  # UNCLEANED: 0, never equal
    changed = was != cleaned_as
    code = rows.code
    starts = np.flatnonzero(~same_as_previous(code, widest_end))
    head = code[starts]
    redo = (
        np.logical_or.reduceat(changed, starts)
        | (widest_end[starts] >= coded.closed_until[head])
        | ~coded.settled[head]
        | np.isnan(coded.interval[head])
    )
    if redo.all():
        return live
    keep: np.ndarray = live & np.repeat(redo, np.diff(np.append(starts, len(code))))
    return keep


class _Emitted:
    """The emitted windows of the touched keys as arrays (null masks where the column may be)."""

    def __init__(self, emitted: pl.DataFrame, rank: np.ndarray) -> None:
        def column(name: str, fill: float) -> tuple[np.ndarray, np.ndarray]:
            series = emitted[name]
            if series.null_count() == 0:
                return series.to_numpy(), np.zeros(len(series), dtype=bool)
            return series.fill_null(fill).to_numpy(), series.is_null().to_numpy()

        self.rank = rank
        self.key = rank[emitted["code"].to_numpy()]  # by width, then sorted like the rows
        self.width = emitted["width_s"].to_numpy()
        self.bucket = emitted["bucket_start_ms"].to_numpy()
        self.actual, _ = column("actual", np.nan)
        self.n, self.n_null = column("n_readings", 0)
        self.flags, self.flags_null = column("flags", 0)
        self.revision, self.revision_null = column("revision", 0)
        self.replaced = np.zeros(emitted.height, dtype=bool)
        self.any_null = bool(self.n_null.any() or self.flags_null.any())
        # emitted windows come sorted by width from the last close (then each width's rows
        # are a slice) unless untouched keys' rows were carried over in front of them
        self.by_width = bool((self.width[1:] >= self.width[:-1]).all())

    def _find(self, width_s: int, code: np.ndarray, bucket: np.ndarray) -> np.ndarray:
        """Position of the emitted window (``width_s``, key ``code``, ``bucket``) of each closed
        one, -1: none. A width's rows are a slice when the emitted windows are sorted by width.

        Only the windows no later than their key's latest emitted one of the width are looked
        up: the others (most of a poll's, closing for the first time) cannot have been emitted.
        """
        if self.by_width:
            lo, hi = (int(i) for i in np.searchsorted(self.width, [width_s, width_s + 1]))
            at: np.ndarray | None = None
            key, start = self.key[lo:hi], self.bucket[lo:hi]
        else:
            lo, at = 0, np.flatnonzero(self.width == width_s)
            key, start = self.key[at], self.bucket[at]
        rank = self.rank.take(code)
        latest = np.full(len(self.rank), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(latest, key, start)
        maybe = np.flatnonzero(bucket <= latest[rank])
        found = np.full(len(code), -1, dtype=np.int64)
        if len(maybe) == 0:
            return found
        hit = find_rows(rank[maybe], bucket[maybe], key, start)
        position = (hit + lo) if at is None else at[hit]
        found[maybe] = np.where(hit >= 0, position, -1)
        return found

    def restate(
        self, w: WindowArrays, closed: np.ndarray, code: np.ndarray, width_s: int
    ) -> dict[str, np.ndarray]:
        """The closed windows that are new or changed, with their revision; marks what they replace.

        A window changed when it was not emitted, or its reading count, flags or actual differ
        (nulls in the emitted row compare equal).
        """
        bucket = w.bucket_start_ms.take(closed)
        found = self._find(width_s, code, bucket)  # emitted position per closed window
        changed = np.ones(len(found), dtype=bool)
        was = np.flatnonzero(found >= 0)
        revision_was = np.zeros(0, dtype=np.int64)
        if len(was):  # compare with the emitted result
            at = found[was]
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
            "head": w.head.take(closed),
            "_code": code,
            "width_s": np.full(len(closed), width_s, dtype=np.int64),
            "bucket_start_ms": bucket,
            "actual": w.actual.take(closed),
            "n_readings": w.n_readings.take(closed).astype(np.int64),
            "coverage": w.coverage.take(closed),
            "flags": w.flags.take(closed),
            "revision": revision,
        }


def _window_numbers(
    rows: SortedRows, parts: list[dict[str, np.ndarray]], rank: np.ndarray
) -> pl.DataFrame:
    """The restated windows of every width as numbers (``state.EMITTED_SCHEMA``), sorted like
    ``WINDOW_KEY`` (rows come sorted by key rank, so the widths' parts usually are)."""
    cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    cols["label"] = rows.frame["label"].to_numpy()[rows.order[cols.pop("head")]]
    cols["code"] = cols.pop("_code")
    width, key, bucket = cols["width_s"], rank[cols["code"]], cols["bucket_start_ms"]
    later = (width[1:] > width[:-1]) | (
        (width[1:] == width[:-1])
        & ((key[1:] > key[:-1]) | ((key[1:] == key[:-1]) & (bucket[1:] > bucket[:-1])))
    )
    if not later.all():
        order = np.lexsort((bucket, key, width))
        cols = {name: c[order] for name, c in cols.items()}
    return pl.DataFrame({name: cols[name] for name in EMITTED_SCHEMA}, schema=EMITTED_SCHEMA)


def _window_frame(numbers: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """The windows with their strings (``WINDOW_SCHEMA`` and ``revision``)."""
    keys = catalog.keys[numbers["code"].to_numpy()]
    labels = catalog.labels[numbers["label"].to_numpy()]
    columns = {s.name: s for f in (keys, labels, numbers) for s in f.get_columns()}
    return pl.DataFrame([columns[c] for c in [*WINDOW_SCHEMA, "revision"]])  # no query to plan


def _next_emitted(
    old: pl.DataFrame,
    new: pl.DataFrame,
    watermark: np.ndarray,
    rules: EventTimeParams,
    rank: np.ndarray,
) -> pl.DataFrame:
    """The emitted windows to keep: the old ones not replaced and the new ones, both while
    their widest window still takes late data, sorted by (width, key rank, start) like the new
    windows: the sort merges two sorted runs (none when no old window stays, the usual poll
    once a poll spans more than the widest window and the lateness)."""
    parts = [old, new] if not old.is_empty() else [new]

    def column(name: str) -> np.ndarray:
        return np.concatenate([p[name].to_numpy() for p in parts])

    code, bucket = column("code"), column("bucket_start_ms")
    at = np.flatnonzero(_retained(bucket, code, watermark, rules))
    if len(at) == 0:
        return new.clear()
    if at[0] >= old.height:  # only new windows stay, already in order: no sort, one gather
        return new[at - old.height] if len(at) < new.height else new
    width = column("width_s")[at]
    widths = np.array(sorted(rules.widths_s), dtype=np.int64)  # the usual widths: no hashing
    slot = np.searchsorted(widths, width)
    if not (widths[np.minimum(slot, len(widths) - 1)] == width).all():  # stored other widths
        widths = np.sort(pl.Series(width).unique().to_numpy())
        slot = np.searchsorted(widths, width)
    major = slot * len(rank) + rank[code[at]]
    both = pl.concat(parts, rechunk=False)  # one gather reads both
    kept: pl.DataFrame = both[at[sort_order(major, bucket[at])]]
    return kept


def freeze_intervals(rows: SortedRows, frozen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval per key code (frozen, else inferred from the rows) and the frozen intervals with
    the new keys added.

    A key is frozen the first time it has at least 3 readings, one of them not final.
    """
    unknown = np.isnan(frozen)
    if not unknown.any() or not unknown.take(rows.code).any():
        return frozen, frozen
    inferred = median_steps(rows.code, rows.ts, unknown)
    counts = np.bincount(rows.code, minlength=len(frozen))
    live = np.bincount(rows.code, weights=~rows.anchor, minlength=len(frozen))
    freeze = unknown & ~np.isnan(inferred) & (counts >= 3) & (live > 0)
    return np.where(unknown, inferred, frozen), np.where(freeze, inferred, frozen)


def _retained(
    bucket: np.ndarray, code: np.ndarray, watermark: np.ndarray, rules: EventTimeParams
) -> np.ndarray:
    """Windows whose widest window still takes late data (a device without watermark: none)."""
    widest_ms = rules.widest_s * 1000
    wm = watermark.take(code)
    keep: np.ndarray = (wm != NO_WATERMARK) & (
        (bucket // widest_ms) * widest_ms + (widest_ms + rules.allowed_lateness_ms) >= wm
    )
    return keep
