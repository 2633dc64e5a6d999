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
The touched readings are sorted by integer key codes (:mod:`processors.kernels.keys`,
:mod:`processors.kernels.rows`) and the windows are built and compared on arrays
(:mod:`processors.kernels.closing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from processors.kernels.closing import close, freeze_intervals
from processors.kernels.decode import READING_SCHEMA
from processors.kernels.keys import device_runs, same_as_previous
from processors.kernels.params import EventTimeParams
from processors.kernels.rows import (
    NO_WATERMARK,
    buffer_of,
    device_watermarks,
    evict,
    sort_rows,
    split_devices,
    watermark_rows,
)
from processors.kernels.windows import bucket_start, empty_windows

DEDUP_KEY = ["device_id", "metric", "ts_ms"]
_BUFFER_COLUMNS = [*READING_SCHEMA, "anchor"]


@dataclass(frozen=True, kw_only=True)
class EventTimeState:
    """What a processor keeps per partition between batches (rebuilt from the DB on assignment).

    Attributes:
        buffer: readings of windows that may still change, plus a few final "anchor" readings per
            key (predecessors for counter consumption, gaps and stuck runs).
        emitted: last emitted result per window still within the lateness, with its revision.
        watermarks: (device_id, watermark_ms, last_seen_ms).
        intervals: (device_id, metric, interval_ms) expected steps; inferred once, then frozen.
        register_max: optional (device_id, metric, register_max) known register maxima.
        reference: optional (device_id, metric, median, iqr) from history for spike detection
            (without it no spikes are flagged: statistics of a batch depend on the batching).
    """

    buffer: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={**READING_SCHEMA, "anchor": pl.Boolean()})
    )
    emitted: pl.DataFrame = field(
        default_factory=lambda: empty_windows().with_columns(revision=pl.lit(0, pl.Int64))
    )
    watermarks: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={"device_id": pl.String, "watermark_ms": pl.Int64, "last_seen_ms": pl.Int64}
        )
    )
    intervals: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={"device_id": pl.String, "metric": pl.String, "interval_ms": pl.Int64}
        )
    )
    register_max: pl.DataFrame | None = None
    reference: pl.DataFrame | None = None


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
    incoming = readings.select(list(READING_SCHEMA))
    if dict(incoming.schema) != READING_SCHEMA:
        incoming = incoming.cast(READING_SCHEMA)  # type: ignore[arg-type]
    if incoming.is_empty():
        return StepResult(state, _no_windows(), _no_rejections(), 0)
    device = incoming["device_id"]  # one lookup per run of a device (a Kafka batch)
    devices = device.gather(np.flatnonzero((device != device.shift()).fill_null(True))).unique()
    buffer, buffer_rest = split_devices(state.buffer.select(_BUFFER_COLUMNS), devices)
    emitted, emitted_rest = split_devices(state.emitted, devices)
    emitted = emitted.rechunk()
    frame = pl.concat([buffer, incoming.with_columns(anchor=pl.lit(False))])
    rows, index = sort_rows(frame, emitted, params.clean.stuck_kinds)
    names, device_of = device_runs(index)
    wm_at = watermark_rows(names, state.watermarks)  # None: a device has two rows
    if wm_at is None:
        wm_before = device_watermarks(names, state.watermarks)
    else:
        known = state.watermarks["watermark_ms"].fill_null(NO_WATERMARK).to_numpy()
        wm_before = np.append(known, NO_WATERMARK)[wm_at]  # -1 picks the appended "unknown"

    # first arrival wins: the buffer's copy, else the earliest in the batch
    new = rows.order >= buffer.height
    duplicate = new & same_as_previous(rows.code, rows.ts)
    fresh = new & ~duplicate
    first_device = device_of[rows.code]
    future = fresh & (rows.ts > now_ms + params.max_future_ms)
    deadline = rows.final_end(params.widest_s) + params.allowed_lateness_ms
    wm_row = _arrival_watermarks(
        first_device, rows.order, rows.ts, fresh & ~future, wm_before[first_device], deadline
    )
    late = fresh & ~future & (deadline < wm_row)
    refused = future | late
    rejected = _rejected(
        incoming,
        rows.order[refused] - buffer.height,
        future=future[refused],
        watermark=wm_row[refused],
        params=params,
    )
    rows = rows.take(~duplicate & ~future & ~late)

    # watermarks: the largest accepted event time per device
    accepted = np.where(rows.order >= buffer.height, rows.ts, NO_WATERMARK)
    row_device = device_of[rows.code]
    starts = np.flatnonzero(~same_as_previous(row_device))
    batch_max = np.full(names.len(), NO_WATERMARK, dtype=np.int64)
    if len(starts):
        batch_max[row_device[starts]] = np.maximum.reduceat(accepted, starts)
    wm_after = np.maximum(wm_before, batch_max)
    seen = batch_max != NO_WATERMARK
    if wm_at is None:
        watermarks = _advance(state.watermarks, names.filter(seen), batch_max[seen], now_ms)
    else:
        watermarks = _advance_rows(state.watermarks, wm_at, names, batch_max, now_ms)

    done = close(
        rows,
        watermark=wm_after[device_of],
        emitted=emitted,
        emitted_code=index.codes[1],
        intervals=state.intervals,
        register_max=state.register_max,
        reference=state.reference,
        rules=params,
    )
    new_state = replace(
        state,
        buffer=_concat(buffer_rest, done.buffer),
        emitted=_concat(emitted_rest, done.emitted),
        watermarks=watermarks,
        intervals=done.intervals,
    )
    return StepResult(new_state, done.windows, rejected, int(duplicate.sum()))


def close_idle(
    state: EventTimeState, *, now_ms: int, idle_ms: int, params: EventTimeParams
) -> StepResult:
    """Close the open windows of devices not heard from for ``idle_ms`` (``idle_ms=0``: all)."""
    idle = state.watermarks.filter(pl.col("last_seen_ms") <= now_ms - idle_ms)["device_id"]
    buffer, _ = split_devices(state.buffer.select(_BUFFER_COLUMNS), idle)
    widest_ms = params.widest_s * 1000
    ends = (
        buffer.filter(~pl.col("anchor"))
        .group_by("device_id")
        .agg(_end=(bucket_start(params.widest_s) + widest_ms).max() + 1)
        .join(state.watermarks.select("device_id", "watermark_ms"), on="device_id", how="left")
        .filter(pl.col("watermark_ms").is_null() | (pl.col("_end") > pl.col("watermark_ms")))
    )
    if ends.is_empty():
        return StepResult(state, _no_windows(), _no_rejections(), 0)

    touched = ends["device_id"]
    pushed_wm = ends.select("device_id", "_end")
    watermarks = (
        state.watermarks.join(pushed_wm, on="device_id", how="left", maintain_order="left")
        .with_columns(watermark_ms=pl.max_horizontal("watermark_ms", "_end"))
        .drop("_end")
    )
    buffer, buffer_rest = split_devices(state.buffer.select(_BUFFER_COLUMNS), touched)
    emitted, emitted_rest = split_devices(state.emitted, touched)
    rows, index = sort_rows(buffer, emitted, params.clean.stuck_kinds)
    names, device_of = device_runs(index)
    done = close(
        rows,
        watermark=device_watermarks(names, watermarks)[device_of],
        emitted=emitted,
        emitted_code=index.codes[1],
        intervals=state.intervals,
        register_max=state.register_max,
        reference=state.reference,
        rules=params,
        hold_counters=False,
    )
    new_state = replace(
        state,
        buffer=_concat(buffer_rest, done.buffer),
        emitted=_concat(emitted_rest, done.emitted),
        watermarks=watermarks,
        intervals=done.intervals,
    )
    return StepResult(new_state, done.windows, _no_rejections(), 0)


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
    base = EventTimeState()
    frame = readings.select(list(READING_SCHEMA)).cast(READING_SCHEMA)  # type: ignore[arg-type]
    watermarks = frame.group_by("device_id").agg(
        watermark_ms=pl.col("ts_ms").max(), last_seen_ms=pl.lit(now_ms, pl.Int64)
    )
    stored = emitted.select(base.emitted.columns).cast(base.emitted.schema)
    state = EventTimeState(
        emitted=stored,
        watermarks=watermarks.select(base.watermarks.columns),
        intervals=base.intervals if intervals is None else intervals.select(base.intervals.columns),
        register_max=register_max,
        reference=reference,
    )
    rows, index = sort_rows(
        frame.with_columns(anchor=pl.lit(False)), stored.clear(), params.clean.stuck_kinds
    )
    rows = rows.take(~same_as_previous(rows.code, rows.ts))  # first copy of a repeated reading
    names, device_of = device_runs(index)
    kept = evict(rows, device_watermarks(names, watermarks)[device_of], params)
    _, known = freeze_intervals(kept, state.intervals)
    return replace(state, buffer=buffer_of(kept), intervals=known)


def _advance(
    watermarks: pl.DataFrame, devices: pl.Series, batch_max: np.ndarray, now_ms: int
) -> pl.DataFrame:
    seen = pl.DataFrame({"device_id": devices, "batch_max": batch_max})
    return (
        watermarks.join(seen, on="device_id", how="full", coalesce=True)
        .with_columns(
            watermark_ms=pl.max_horizontal("watermark_ms", "batch_max"),
            last_seen_ms=pl.when(pl.col("batch_max").is_not_null())
            .then(pl.lit(now_ms, pl.Int64))
            .otherwise(pl.col("last_seen_ms")),
        )
        .drop("batch_max")
    )


def _advance_rows(
    watermarks: pl.DataFrame, at: np.ndarray, names: pl.Series, batch_max: np.ndarray, now_ms: int
) -> pl.DataFrame:
    """:func:`_advance` given each device's row in ``watermarks`` (``at``, -1: none)."""
    seen = batch_max != NO_WATERMARK
    update = np.flatnonzero(seen & (at >= 0))
    rows = at[update]
    wm = watermarks["watermark_ms"]
    old = wm.gather(rows).fill_null(NO_WATERMARK).to_numpy()
    out = watermarks.with_columns(
        wm.clone().scatter(rows, np.maximum(old, batch_max[update])),
        watermarks["last_seen_ms"].clone().scatter(rows, now_ms),
    )
    added = np.flatnonzero(seen & (at < 0))
    if len(added) == 0:
        return out
    new = pl.DataFrame(
        {
            "device_id": names.gather(added),
            "watermark_ms": batch_max[added],
            "last_seen_ms": np.full(len(added), now_ms, dtype=np.int64),
        },
        schema=watermarks.schema,
    )
    return pl.concat([out, new])


def _arrival_watermarks(
    device: np.ndarray,
    order: np.ndarray,
    ts: np.ndarray,
    counts: np.ndarray,
    before: np.ndarray,
    deadline: np.ndarray,
) -> np.ndarray:
    """Each row's device watermark when the row arrived: ``before`` (earlier batches) raised by
    the ``counts`` rows of the same device that arrived earlier in this batch (``order``).

    Rows are grouped by device. A device's readings keep their order through the broker, the
    gateway and Kafka, so this makes ``too_late`` independent of where polls are cut (live and
    replay refuse the same readings). The exact pass runs only when some row could be late.
    """
    if len(ts) == 0:
        return before
    starts = np.flatnonzero(~same_as_previous(device))
    newest = np.maximum.reduceat(np.where(counts, ts, NO_WATERMARK), starts)
    top = np.maximum(before, np.repeat(newest, np.diff(starts, append=len(ts))))
    if not (counts & (deadline < top)).any():
        return before
    perm = np.lexsort((order, device))
    d = device[perm]
    floor = int(ts.min()) - 1  # below every event time: "nothing earlier" within a device
    v = np.where(counts, ts, floor)[perm] - floor  # >= 0
    first = np.r_[True, d[1:] != d[:-1]]
    seg = np.cumsum(first) - 1
    span = int(v.max()) + 1
    # running max per device in arrival order: offset each device above the previous ones so
    # one accumulate never carries a value across devices
    lifted = np.maximum.accumulate(v + seg * span) - seg * span
    earlier = np.empty_like(lifted)
    earlier[1:] = lifted[:-1]
    earlier[first] = 0  # exclusive: the rows before this one
    earlier = np.where(earlier > 0, earlier + floor, NO_WATERMARK)
    out = np.empty_like(before)
    out[perm] = np.maximum(before[perm], earlier)
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
    if rest.is_empty():
        return part
    return pl.concat([rest, part.select(rest.columns)])


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
