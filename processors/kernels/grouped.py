"""The devices a step touches, cut into groups of whole devices processed one after the other.

Everything a step does to a reading depends on its key's rows only (and the device's
watermark), so stepping the touched devices a group at a time gives what one pass gives, while
the temporary arrays (sorting, cleaning, counters, windows: a few dozen per row) scale with a
group instead of the whole partition. That matters once devices hold many
readings: at one reading a minute each touched device brings its ~120 buffered readings (widest
window plus lateness), so a partition's share of a poll of records of 20 readings is ~140 rows
per record: 233k rows for 1,667 records, 1.4M when a 10,000-record poll came from one partition
(before ``partition_fetch_bytes``). In one pass that 1.4M-row step held ~230 MB of temporaries
at steady state with 100,000 devices (RSS above the step's start, median of the steps); in
groups, 139 MB.

A group costs a few ms of fixed work (a close() call, a filter of the state per group), so
groups are large: a step over fewer rows than ``GROUP_ROWS`` is one group, with no extra pass.
Groups follow key rank (a device's keys are adjacent in it), so each group's windows come out
sorted like ``windows.WINDOW_KEY`` and :func:`by_width` merges them without a sort.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from processors.kernels.keys import same_as_previous
from processors.kernels.state import Coded

GROUP_ROWS = 262_144  # rows (buffered and arriving) stepped at once, about: whole devices


class DeviceGroups:
    """The touched devices of ``coded`` in groups of about ``GROUP_ROWS`` rows, in key-rank
    order; each group's buffered rows, emitted windows and arriving readings.

    Args:
        coded: the state, its catalog covering every device of ``arriving``.
        touched: per device code: the step processes it.
        arriving: device code of each incoming reading (None: none arrive).
    """

    def __init__(
        self, coded: Coded, touched: np.ndarray, arriving: np.ndarray | None = None
    ) -> None:
        device_of = coded.catalog.key_device
        self._buffer, self._emitted = coded.buffer, coded.emitted
        row_device = _devices_of(coded.buffer, device_of)
        self._emitted_device = _devices_of(coded.emitted, device_of)
        arriving = np.zeros(0, np.int64) if arriving is None else arriving
        hit = touched.take(row_device)
        self.n = 1 if touched.any() else 0
        # the usual step is one group: its rows are those of touched devices (no numbering)
        self._group = touched
        self._row_group = hit
        self._arrival_group: np.ndarray | None = None
        if int(np.count_nonzero(hit)) + len(arriving) > GROUP_ROWS:
            self._group = _cut(coded, touched, hit, row_device, arriving)
            self.n = int(self._group.max()) + 1
            self._row_group = self._group.take(row_device)
            self._arrival_group = self._group.take(arriving)

    def _is(self, group: np.ndarray, g: int) -> np.ndarray:
        """Where ``group`` (numbers, or touched flags when the step was not cut) is ``g``."""
        return group if group.dtype == bool else group == g

    def _not_touched(self, group: np.ndarray) -> np.ndarray:
        return ~group if group.dtype == bool else group < 0

    def buffer(self, g: int) -> pl.DataFrame:
        """Buffered rows of group ``g``'s devices."""
        return _rows(self._buffer, self._is(self._row_group, g), small=True)

    def emitted(self, g: int) -> pl.DataFrame:
        """Emitted windows of group ``g``'s devices."""
        return _rows(self._emitted, self._is(self._group.take(self._emitted_device), g), small=True)

    def arrivals(self, g: int) -> np.ndarray | None:
        """Positions of group ``g``'s readings among the arriving ones (None: all of them)."""
        if self._arrival_group is None:
            return None
        out: np.ndarray = np.flatnonzero(self._arrival_group == g)
        return out

    def rest(self) -> tuple[Callable[[], pl.DataFrame], Callable[[], pl.DataFrame]]:
        """How to get the buffered rows and emitted windows of the untouched devices: called
        once the groups are done, so this copy of most of the state and a group's arrays are
        not held at the same time."""
        emitted_group = self._group.take(self._emitted_device)
        return (
            lambda: _rows(self._buffer, self._not_touched(self._row_group)),
            lambda: _rows(self._emitted, self._not_touched(emitted_group)),
        )


def _devices_of(frame: pl.DataFrame, device_of: np.ndarray) -> np.ndarray:
    """Device code of each row of a coded frame."""
    if frame.is_empty():
        return np.zeros(0, np.int64)
    out: np.ndarray = device_of.take(frame["code"].to_numpy())
    return out


def _cut(
    coded: Coded,
    touched: np.ndarray,
    hit: np.ndarray,
    row_device: np.ndarray,
    arriving: np.ndarray,
) -> np.ndarray:
    """Group number per device (-1: untouched): touched devices in key-rank order, cut where
    the rows so far pass a multiple of ``GROUP_ROWS``."""
    catalog = coded.catalog
    n_devices = len(touched)
    rows = np.bincount(row_device[hit], minlength=n_devices)
    rows += np.bincount(arriving, minlength=n_devices)
    by_rank = np.empty_like(catalog.rank)
    by_rank[catalog.rank] = np.arange(len(catalog.rank))  # key codes in rank order
    device = catalog.key_device.take(by_rank)
    device = device[~same_as_previous(device)]  # each device once: its keys are adjacent
    device = device[touched.take(device)]
    count = rows.take(device)
    start = np.cumsum(count) - count
    cut = start // GROUP_ROWS
    number = np.cumsum(~same_as_previous(cut)) - 1  # 0, 1, ... without gaps
    group = np.full(n_devices, -1, dtype=np.int32)
    group[device] = number
    return group


def _rows(frame: pl.DataFrame, wanted: np.ndarray, *, small: bool = False) -> pl.DataFrame:
    """The rows of ``frame`` where ``wanted``, in one chunk (gathers from one chunk are several
    times faster). ``small``: a group's rows, a fraction of the frame; a filter, then joining
    its chunks, is faster than one gather from many chunks."""
    if frame.is_empty() or wanted.all():
        return frame
    if not wanted.any():
        return frame.clear()
    if small or frame.n_chunks() == 1:
        return frame.filter(pl.Series(wanted)).rechunk()
    # a gather writes one chunk: filtering many chunks, then joining them, would hold the rows
    # twice at once
    return frame[np.flatnonzero(wanted)]


def by_width(parts: list[pl.DataFrame], widths: tuple[int, ...]) -> pl.DataFrame:
    """The groups' windows (each sorted like ``WINDOW_KEY``: width, then key and start; the
    groups in key order; ``widths``: the window widths, s) in one frame sorted the same way:
    each width's slice of every group in turn, joined (no sort, no gather of the strings)."""
    if len(parts) == 1:
        return parts[0]
    if len(widths) < 2:
        return pl.concat(parts)
    pieces = []
    for w in sorted(widths):
        for part in parts:
            width = part["width_s"].to_numpy()
            a, b = np.searchsorted(width, [w, w + 1])
            pieces.append(part.slice(int(a), int(b - a)))
    return pl.concat(pieces)
