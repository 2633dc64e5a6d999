""":func:`~processors.kernels.closing.close` over groups of whole devices, one after the other.

Closing works per key, so closing the touched devices a group at a time gives what one call
gives, while its temporary arrays (a few dozen per row: cleaning, counters, windows, the kept
rows) scale with a group instead of the whole poll. That matters once devices hold many
readings: at one reading a minute each touched device brings its 120 buffered readings (widest
window plus lateness), so a partition's share of a 20,000-record poll is ~470,000 rows (computed:
3,333 devices x 140). Each extra close() call costs a few ms of fixed work (groups of 131,072 rows
took the kernel bench from 2.32M to 1.79M readings/s), so groups are large: at the default
10,000-record polls a partition's step is one group, and grouping bounds the idle timer's close
of whole partitions (2M rows at 100,000 devices) and larger polls.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import polars as pl

from processors.kernels.closing import Closed, close
from processors.kernels.keys import same_as_previous
from processors.kernels.params import EventTimeParams
from processors.kernels.rows import SortedRows
from processors.kernels.state import Coded

GROUP_ROWS = 262_144  # rows closed at once, about (a group ends at a device's last row)


def close_grouped(
    rows: SortedRows,
    *,
    watermark: np.ndarray,
    emitted: pl.DataFrame,
    coded: Coded,
    rules: EventTimeParams,
    hold_counters: bool = True,
    widest_end: np.ndarray | None = None,
    group_rows: int | None = None,
) -> Closed:
    """:func:`close` with the same arguments, a group of about ``group_rows`` (default
    ``GROUP_ROWS``) rows of whole devices at a time; windows come out sorted like
    ``windows.WINDOW_KEY``, as from one call."""
    n = len(rows.code)
    group_rows = GROUP_ROWS if group_rows is None else group_rows
    if n <= group_rows:
        return close(
            rows, watermark=watermark, emitted=emitted, coded=coded, rules=rules,
            hold_counters=hold_counters, widest_end=widest_end,
        )  # fmt: skip
    device_of = coded.catalog.key_device
    device = device_of.take(rows.code)
    heads = np.flatnonzero(~same_as_previous(device))  # rows are sorted: a device is one run
    wanted = np.arange(group_rows, n, group_rows)
    cuts = np.unique(heads.take(np.minimum(np.searchsorted(heads, wanted), len(heads) - 1)))
    bounds = [0, *(int(c) for c in cuts if c > 0), n]
    emitted_device = device_of.take(emitted["code"].to_numpy()) if emitted.height else None
    parts: list[Closed] = []
    for lo, hi in pairwise(bounds):
        mine = emitted
        if emitted_device is not None:
            group = np.zeros(len(coded.watermark), dtype=bool)
            group[device[lo:hi]] = True
            mine = emitted.filter(pl.Series(group.take(emitted_device)))
        done = close(
            rows.slice(lo, hi), watermark=watermark, emitted=mine, coded=coded, rules=rules,
            hold_counters=hold_counters,
            widest_end=None if widest_end is None else widest_end[lo:hi],
        )  # fmt: skip
        # the per-key arrays change only at this group's keys: the next group starts from them
        coded = replace(
            coded, interval=done.interval, closed_until=done.closed_until, settled=done.settled
        )
        parts.append(done)
    return Closed(
        buffer=pl.concat([p.buffer for p in parts]),
        emitted=pl.concat([p.emitted for p in parts]),
        windows=_by_width([p.windows for p in parts]),
        interval=coded.interval,
        closed_until=coded.closed_until,
        settled=coded.settled,
    )


def _by_width(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The groups' windows (each sorted like ``WINDOW_KEY``: width, then key and start; the
    groups in key order) in one frame sorted the same way: each width's slice of every group in
    turn, one gather (no sort of the strings)."""
    frame = pl.concat(parts)
    width = frame["width_s"].to_numpy()
    widths = np.unique(width)
    if len(widths) < 2:
        return frame
    offsets = np.cumsum([0, *(p.height for p in parts)])
    pieces = []
    for w in widths:
        for lo, hi in pairwise(offsets.tolist()):
            a, b = np.searchsorted(width[lo:hi], [w, w + 1])
            pieces.append(np.arange(lo + a, lo + b))
    return frame[np.concatenate(pieces)]
