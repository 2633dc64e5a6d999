"""Event time as pure functions over frames plus an explicit state value.

:func:`step` takes the state and a frame of new readings and returns the new state, the windows
that closed or changed (with their revision) and the readings refused. Nothing here reads a clock:
the caller passes ``now_ms``. Feeding the same per-device-ordered readings in any split of batches
gives the same final window results as one call, which the unit tests check.

Rules, per device (the watermark is the largest event time seen for the device, in arrival order:
a reading is judged against the readings of its device that arrived before it, in this batch too):
- a window closes when the watermark passes its end;
- a reading whose widest window ended more than ``allowed_lateness_ms`` before the watermark
  is refused with reason ``too_late``; one within the lateness restates its windows (revision + 1);
- a reading more than ``max_future_ms`` after ``now_ms`` is refused with reason ``future_ts``;
- the window of a counter's latest reading waits for the next reading of that counter, which
  tells whether it was a glitch (:mod:`processors.kernels.counters`);
- :func:`close_idle` closes the open windows of devices silent for ``idle_ms``, those too.

Only the devices a call touches (those with new readings, or whose idle timer fires) are
processed: the others' windows cannot change, so their part of the state is carried over as is.
The state is kept as numbers (:mod:`processors.kernels.state`): incoming rows get their key
codes from the state's catalog, one lookup per Kafka record (:mod:`processors.kernels.catalog`),
the touched devices are taken a group at a time (:mod:`processors.kernels.grouped`: the
temporary arrays scale with a group, not the poll), their readings sorted by key rank and time
(:mod:`processors.kernels.rows`) and the windows built and compared on arrays
(:mod:`processors.kernels.closing`); strings are gathered back only for the output windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from processors.kernels.closing import Closed, close, freeze_intervals
from processors.kernels.decode import READING_SCHEMA
from processors.kernels.grouped import DeviceGroups, by_width
from processors.kernels.keys import same_as_previous
from processors.kernels.params import EventTimeParams
from processors.kernels.rows import buffer_frame, evict, sort_rows
from processors.kernels.state import (
    BUFFER_SCHEMA,
    NO_WATERMARK,
    UNCLEANED,
    Coded,
    EventTimeState,
)
from processors.kernels.windows import bucket_starts, empty_windows

DEDUP_KEY = ["device_id", "metric", "ts_ms"]


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one :func:`step` produced."""

    state: EventTimeState  # the state to pass to the next step
    windows: pl.DataFrame  # closed windows, new (revision 1) or restated (revision + 1)
    rejected: pl.DataFrame  # refused readings with ``reason`` and ``detail``
    duplicates: int  # readings dropped as duplicates of buffered ones


def step(
    state: EventTimeState, readings: pl.DataFrame, *, now_ms: int, params: EventTimeParams
) -> StepResult:
    """Advance the state by one batch of readings (duplicates allowed). Rows of a device are in
    arrival order (the order lateness is judged in); devices may interleave in any order."""
    incoming = (  # a frame already in the canonical columns is taken as is (no query)
        readings if readings.columns == list(READING_SCHEMA) else readings.select(READING_SCHEMA)
    )
    if dict(incoming.schema) != READING_SCHEMA:
        incoming = incoming.cast(READING_SCHEMA)  # type: ignore[arg-type]
    if incoming.is_empty():
        return StepResult(state, _no_windows(), _no_rejections(), 0)
    catalog, key, label = state.coded.catalog.code_rows(incoming)  # one lookup per run
    coded = state.coded.grown(catalog)
    arriving = catalog.key_device.take(key)
    touched = np.zeros(catalog.n_devices, dtype=bool)
    touched[arriving] = True
    groups = DeviceGroups(coded, touched, arriving)
    walk = _Walk(
        coded=coded,
        new=_coded_rows(incoming, key, label),
        in_order=_in_time_order(arriving, incoming["ts_ms"].to_numpy()),
        now_ms=now_ms,
        params=params,
    )
    for g in range(groups.n):
        walk.group(groups.buffer(g), groups.emitted(g), groups.arrivals(g))
    buffer_rest, emitted_rest = groups.rest()
    joined = walk.closed()
    new_state = _closed_state(
        state,
        walk.coded,
        joined,
        buffer_rest,
        emitted_rest,
        walk.watermark,
        last_seen=np.where(walk.seen, now_ms, coded.last_seen),
        known=coded.known | walk.seen,
    )
    position, future, watermark = walk.refused()
    rejected = _rejected(incoming, position, future=future, watermark=watermark, params=params)
    return StepResult(new_state, joined.windows, rejected, walk.duplicates)


class _Walk:
    """One step over the touched devices, a group at a time (:class:`DeviceGroups`): the
    watermarks, per-key arrays and refusals carried from group to group."""

    def __init__(
        self,
        *,
        coded: Coded,
        new: pl.DataFrame,
        in_order: bool,
        now_ms: int,
        params: EventTimeParams,
    ) -> None:
        self.coded = coded  # per-key arrays as the groups so far left them
        self.new = new  # the incoming readings as state rows, in arrival order
        self.in_order = in_order  # _in_time_order of the incoming readings
        self.now_ms = now_ms
        self.params = params
        self.watermark = coded.watermark.copy()
        self.seen = np.zeros(len(coded.watermark), dtype=bool)
        self.done: list[Closed] = []
        self.duplicates = 0
        self._refused: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def group(self, buffer: pl.DataFrame, emitted: pl.DataFrame, at: np.ndarray | None) -> None:
        """Step the devices of one group: their buffered rows and emitted windows, and their
        incoming readings (positions ``at``; None: all)."""
        params, coded = self.params, self.coded
        catalog = coded.catalog
        device_of = catalog.key_device
        fresh = self.new if at is None else self.new[at]
        rows = sort_rows(pl.concat([buffer, fresh]), catalog, params.clean.stuck_kinds)

        # first arrival wins: the buffer's copy, else the earliest in the batch
        new = rows.order >= buffer.height
        duplicate = new & same_as_previous(rows.code, rows.ts)
        fresh_row = new & ~duplicate
        row_device = device_of.take(rows.code)
        future = fresh_row & (rows.ts > self.now_ms + params.max_future_ms)
        widest_end = rows.final_end(params.widest_s)
        deadline = widest_end + params.allowed_lateness_ms
        counted = fresh_row & ~future
        wm_row = coded.watermark.take(row_device)
        if self.in_order or _keys_in_time_order(row_device, rows.code, rows.order, buffer.height):
            # no reading of this batch follows a later one of its device: only earlier batches
            # count
            late = counted & (deadline < wm_row)
            refused = future | late
            if refused.any():  # the refused readings' details show their arrival watermark
                wm_row = _arrival_watermarks(
                    row_device, rows.order, rows.ts, counted, wm_row, deadline
                )
        else:
            wm_row = _arrival_watermarks(row_device, rows.order, rows.ts, counted, wm_row, deadline)
            late = counted & (deadline < wm_row)
            refused = future | late
        if refused.any():
            position = rows.order[refused] - buffer.height  # among the group's new readings
            self._refused.append(
                (position if at is None else at[position], future[refused], wm_row[refused])
            )
        self.duplicates += int(np.count_nonzero(duplicate))
        taken = ~duplicate & ~future & ~late
        if not taken.all():
            rows = rows.take(taken)
            row_device, widest_end = row_device[taken], widest_end[taken]

        # watermarks: the largest accepted event time per device (rows sorted by device)
        accepted = np.where(rows.order >= buffer.height, rows.ts, NO_WATERMARK)
        starts = np.flatnonzero(~same_as_previous(row_device))
        if len(starts):
            batch_max = np.maximum.reduceat(accepted, starts)
            hit = batch_max != NO_WATERMARK
            device = row_device[starts[hit]]
            self.watermark[device] = np.maximum(self.watermark[device], batch_max[hit])
            self.seen[device] = True

        done = close(
            rows,
            watermark=self.watermark[device_of],
            emitted=emitted,
            coded=coded,
            rules=params,
            widest_end=widest_end,
        )
        self.coded = _carried(coded, done)
        self.done.append(done)

    def refused(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions among the incoming readings, future?, arrival watermark) of the refused."""
        if not self._refused:
            return np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int64)
        parts = list(zip(*self._refused, strict=True))
        return (np.concatenate(parts[0]), np.concatenate(parts[1]), np.concatenate(parts[2]))

    def closed(self) -> Closed:
        """What the groups' closes produced, as one :class:`Closed`."""
        return _joined(self.done, self.coded, self.params.widths_s)


def _carried(coded: Coded, done: Closed) -> Coded:
    """``coded`` with the per-key arrays a group's close left: they change only at that group's
    keys, so the next group starts from them."""
    return replace(
        coded, interval=done.interval, closed_until=done.closed_until, settled=done.settled
    )


def _joined(done: list[Closed], coded: Coded, widths: tuple[int, ...]) -> Closed:
    """The groups' :class:`Closed` (at least one) as one (``coded``: the per-key arrays after
    the last group)."""
    if len(done) == 1:
        return done[0]
    return Closed(
        buffer=pl.concat([d.buffer for d in done]),
        emitted=pl.concat([d.emitted for d in done]),
        windows=by_width([d.windows for d in done], widths),
        interval=coded.interval,
        closed_until=coded.closed_until,
        settled=coded.settled,
    )


def close_idle(
    state: EventTimeState, *, now_ms: int, idle_ms: int, params: EventTimeParams
) -> StepResult:
    """Close the open windows of devices not heard from for ``idle_ms`` (``idle_ms=0``: all)."""
    coded = state.coded
    catalog = coded.catalog
    idle = coded.known & (coded.last_seen <= now_ms - idle_ms)
    buffer = coded.buffer
    code = buffer["code"].to_numpy()
    device_of = catalog.key_device
    row_device = device_of.take(code)
    live = np.flatnonzero(idle.take(row_device) & ~buffer["anchor"].to_numpy())
    if len(live) == 0:
        return StepResult(state, _no_windows(), _no_rejections(), 0)
    gauge = (catalog.labels["kind"] == "gauge").fill_null(False).to_numpy()
    label = buffer["label"].to_numpy().take(live)
    widest_ms = params.widest_s * 1000
    end = bucket_starts(buffer["ts_ms"].to_numpy().take(live), gauge.take(label), params.widest_s)
    ends = np.full(catalog.n_devices, NO_WATERMARK, dtype=np.int64)
    np.maximum.at(ends, row_device.take(live), end + widest_ms + 1)
    del code, row_device, live, label, end
    was = coded.watermark
    touched = (ends != NO_WATERMARK) & ((was == NO_WATERMARK) | (ends > was))
    if not touched.any():
        return StepResult(state, _no_windows(), _no_rejections(), 0)

    watermark = np.where(touched, np.maximum(was, ends), was)
    groups = DeviceGroups(coded, touched)
    done = []
    for g in range(groups.n):
        rows = sort_rows(groups.buffer(g), catalog, params.clean.stuck_kinds)
        closed = close(
            rows,
            watermark=watermark[device_of],
            emitted=groups.emitted(g),
            coded=coded,
            rules=params,
            hold_counters=False,
        )
        coded = _carried(coded, closed)
        done.append(closed)
    buffer_rest, emitted_rest = groups.rest()
    joined = _joined(done, coded, params.widths_s)
    new_state = _closed_state(state, coded, joined, buffer_rest, emitted_rest, watermark)
    return StepResult(new_state, joined.windows, _no_rejections(), 0)


def _closed_state(
    state: EventTimeState,
    coded: Coded,
    done: Closed,
    buffer_rest: Callable[[], pl.DataFrame],
    emitted_rest: Callable[[], pl.DataFrame],
    watermark: np.ndarray,
    *,
    last_seen: np.ndarray | None = None,
    known: np.ndarray | None = None,
) -> EventTimeState:
    """The state after :func:`close` ran on some devices of ``coded`` (``state``'s, its catalog
    possibly grown): their rows and emitted windows as it left them beside the other devices'
    (``*_rest()``), the new watermarks and per-key arrays, and ``last_seen``/``known`` if given."""
    after = replace(
        coded,
        buffer=_concat(buffer_rest(), done.buffer),
        emitted=_concat(emitted_rest(), done.emitted),
        watermark=watermark,
        last_seen=coded.last_seen if last_seen is None else last_seen,
        known=coded.known if known is None else known,
        interval=done.interval,
        closed_until=done.closed_until,
        settled=done.settled,
    )
    return EventTimeState.of(after, state.register_max, state.reference)


def rebuild_state(
    readings: pl.DataFrame,
    emitted: pl.DataFrame,
    *,
    now_ms: int,
    params: EventTimeParams,
    intervals: pl.DataFrame | None = None,
    register_max: pl.DataFrame | None = None,
    reference: pl.DataFrame | None = None,
) -> EventTimeState:
    """The state of a partition rebuilt from stored rows (on partition assignment).

    Args:
        readings: stored readings of the partition's devices (``READING_SCHEMA`` columns) from
            ``widest window + allowed lateness`` (plus one interval) before each device's latest
            reading; older rows are dropped here anyway, keeping anchors.
        emitted: stored window results of those devices in the same horizon (``WINDOW_SCHEMA``
            columns plus ``revision``).
        now_ms: processing time (devices count as last seen now).
        params: the rules the processor runs with.
        intervals: known expected intervals; others are inferred.
        register_max: known register maxima.
        reference: median/IQR per key for spike detection.
    """
    frame = readings.select(list(READING_SCHEMA)).cast(READING_SCHEMA)  # type: ignore[arg-type]
    watermarks = frame.group_by("device_id").agg(
        watermark_ms=pl.col("ts_ms").max(), last_seen_ms=pl.lit(now_ms, pl.Int64)
    )
    state = EventTimeState(
        emitted=emitted,
        watermarks=watermarks,
        intervals=intervals,
        register_max=register_max,
        reference=reference,
    )
    if frame.is_empty():
        return state
    catalog, key, label = state.coded.catalog.code_rows(frame)
    coded = state.coded.grown(catalog)
    rows = sort_rows(_coded_rows(frame, key, label), catalog, params.clean.stuck_kinds)
    rows = rows.take(~same_as_previous(rows.code, rows.ts))  # first copy of a repeated reading
    kept = evict(rows, coded.watermark[catalog.key_device], params)
    _, known = freeze_intervals(kept, coded.interval)
    buffer = buffer_frame(kept.frame, kept.order, kept.anchor)
    return EventTimeState.of(replace(coded, buffer=buffer, interval=known), register_max, reference)


def _coded_rows(readings: pl.DataFrame, key: np.ndarray, label: np.ndarray) -> pl.DataFrame:
    """Readings as state rows (``BUFFER_SCHEMA``), not anchors, never cleaned.

    Built from the columns directly: a query's planning costs more than these few arrays.
    """
    n = readings.height
    return pl.DataFrame(
        {
            "code": key.astype(np.int32),
            "label": label.astype(np.int32),
            "ts_ms": readings.get_column("ts_ms"),
            "value": readings.get_column("value"),
            "anchor": np.zeros(n, dtype=bool),
            **{c: np.full(n, v) for c, v in UNCLEANED.items()},
        },
        schema=BUFFER_SCHEMA,
    )


def _in_time_order(device: np.ndarray, ts: np.ndarray) -> bool:
    """Whether each device's rows (in arrival order) are one run with non-decreasing times.

    Then a reading's watermark from the readings of its batch that arrived before it is at most
    its own time, before its window's end: it is judged by the earlier batches' watermark alone.
    """
    if len(ts) < 2:
        return True
    other = device[1:] != device[:-1]
    if not ((ts[1:] >= ts[:-1]) | other).all():
        return False
    heads = device[np.flatnonzero(other) + 1]
    return bool(np.bincount(np.append(heads, device[0])).max() <= 1)


def _keys_in_time_order(
    device: np.ndarray, code: np.ndarray, order: np.ndarray, first_new: int
) -> bool:
    """Whether, in rows sorted by (key rank, ts, arrival), each device has one key and its new
    rows (``order >= first_new``) arrived in time order, in one record or several.

    The same conclusion as :func:`_in_time_order`, for a poll holding several records of a
    device (a full poll usually does), from the sorted rows: no sort by device needed.
    """
    if (same_as_previous(device) & ~same_as_previous(code)).any():  # a device with several keys
        return False
    at = np.flatnonzero(order >= first_new)  # the new rows, still sorted (buffer rows between)
    new_code, arrived = code.take(at), order.take(at)
    pair = same_as_previous(new_code)[1:]
    return bool((arrived[1:][pair] > arrived[:-1][pair]).all())


def _arrival_watermarks(
    device: np.ndarray,
    order: np.ndarray,
    ts: np.ndarray,
    counts: np.ndarray,
    before: np.ndarray,
    deadline: np.ndarray,
) -> np.ndarray:
    """Each row's device watermark when the row arrived: ``before`` (earlier batches) raised by
    the ``counts`` rows of the same device that arrived earlier in this batch (``order``: the
    rows' arrival positions, a permutation of ``range(len(ts))``).

    A device's readings keep their order through the broker, the gateway and Kafka, so this
    makes ``too_late`` independent of where polls are cut (live and replay refuse the same
    readings). The exact pass runs only when some row could be late. It walks the rows in
    arrival order, where a device's rows are usually one run (one Kafka record), so grouping
    by device needs no sort.
    """
    if len(ts) == 0 or not counts.any():
        return before
    starts = np.flatnonzero(~same_as_previous(device))
    newest = np.maximum.reduceat(np.where(counts, ts, NO_WATERMARK), starts)
    top = np.maximum(before, np.repeat(newest, np.diff(starts, append=len(ts))))
    if not (counts & (deadline < top)).any():
        return before
    at = np.empty_like(order)
    at[order] = np.arange(len(order))  # sorted position of each arrival position
    at = at[int(order[counts].min()) :]  # nothing counted arrived before: ``before`` holds
    d = device[at]
    runs = np.flatnonzero(~same_as_previous(d))
    if np.bincount(d[runs]).max() > 1:  # a device in several runs: group it, stably
        at = at[np.argsort(d, kind="stable")]
        d = device[at]
        runs = np.flatnonzero(~same_as_previous(d))
    floor = int(ts.min()) - 1  # below every event time: "nothing earlier" within a device
    v = np.where(counts[at], ts[at], floor) - floor  # >= 0
    seg = np.zeros(len(at), dtype=np.int64)
    seg[runs[1:]] = 1
    np.cumsum(seg, out=seg)
    span = int(v.max()) + 1
    # running max per device in arrival order: offset each device above the previous ones so
    # one accumulate never carries a value across devices
    lifted = np.maximum.accumulate(v + seg * span) - seg * span
    earlier = np.empty_like(lifted)
    earlier[1:] = lifted[:-1]
    earlier[runs] = 0  # exclusive: the rows before this one
    earlier = np.where(earlier > 0, earlier + floor, NO_WATERMARK)
    out = before.copy()
    out[at] = np.maximum(before[at], earlier)
    return out


def _rejected(
    incoming: pl.DataFrame,
    positions: np.ndarray,
    *,
    future: np.ndarray,
    watermark: np.ndarray,
    params: EventTimeParams,
) -> pl.DataFrame:
    """Refused readings in arrival order, with ``reason`` and ``detail``."""
    if len(positions) == 0:
        return _no_rejections()
    arrival = np.argsort(positions, kind="stable")
    wm = pl.Series(watermark[arrival], dtype=pl.Int64)
    return (
        incoming[positions[arrival]]
        .with_columns(
            watermark_ms=pl.when(wm != NO_WATERMARK).then(wm),
            reason=pl.Series(np.where(future[arrival], "future_ts", "too_late"), dtype=pl.String),
        )
        .with_columns(
            detail=pl.format(
                "event time {} ms; device watermark {} ms; lateness {} ms",
                "ts_ms",
                "watermark_ms",
                pl.lit(params.allowed_lateness_ms),
            )
        )
        .drop("watermark_ms")
    )


def _concat(rest: pl.DataFrame, part: pl.DataFrame) -> pl.DataFrame:
    """The state rows carried over and the touched ones, in few chunks (each step adds one:
    reading a column of many chunks copies it)."""
    if rest.is_empty():
        return part
    if part.is_empty():
        return rest
    return pl.concat([rest, part], rechunk=rest.n_chunks() >= _MAX_CHUNKS)


_MAX_CHUNKS = 8


def _no_windows() -> pl.DataFrame:
    return empty_windows().with_columns(revision=pl.lit(0, pl.Int64)).clear()


def _no_rejections() -> pl.DataFrame:
    return pl.DataFrame(schema={**READING_SCHEMA, "reason": pl.String(), "detail": pl.String()})


__all__ = [
    "EventTimeParams",
    "EventTimeState",
    "StepResult",
    "close_idle",
    "rebuild_state",
    "step",
]
