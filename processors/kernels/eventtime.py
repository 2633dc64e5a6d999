"""Event time as pure functions over frames plus an explicit state value.

:func:`step` takes the state and a frame of new readings and returns the new state, the windows
that closed or changed (with their revision) and the readings refused. Nothing here reads a clock:
the caller passes ``now_ms``. Feeding the same per-device-ordered readings in any split of batches
gives the same final window results as one call, which the unit tests check.

Rules, per device (the watermark is the largest event time seen for the device):
- a window closes when the watermark passes its end;
- a reading whose widest window ended more than ``allowed_lateness_ms`` before the watermark
  is refused with reason ``too_late``; one within the lateness restates its windows (revision + 1);
- a reading more than ``max_future_ms`` after ``now_ms`` is refused with reason ``future_ts``;
- :func:`close_idle` closes the open windows of devices silent for ``idle_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from processors.kernels.clean import KEY, CleanParams, clean, infer_intervals
from processors.kernels.decode import READING_SCHEMA
from processors.kernels.windows import WIDTHS_S, WINDOW_KEY, aggregate, bucket_start, empty_windows

DEDUP_KEY = ["device_id", "metric", "ts_ms"]
# without reference statistics from history, a stream cannot tell spikes: none are flagged
_NO_REFERENCE = pl.DataFrame(
    schema={"device_id": pl.String, "metric": pl.String, "median": pl.Float64, "iqr": pl.Float64}
)


@dataclass(frozen=True, kw_only=True)
class EventTimeParams:
    """Window and lateness rules."""

    widths_s: tuple[int, ...] = WIDTHS_S  # window widths
    allowed_lateness_ms: int = 3_600_000  # late data within this restates a closed window
    max_future_ms: int = 300_000  # event time further ahead of now is refused
    min_coverage: float = 0.8  # windows below get LOW_COVERAGE
    clean: CleanParams = field(default_factory=CleanParams)

    def __post_init__(self) -> None:
        if not self.widths_s or any(w <= 0 or w % 60 for w in self.widths_s):
            msg = f"widths_s must be positive whole minutes, not {self.widths_s}"
            raise ValueError(msg)
        if self.allowed_lateness_ms < 0 or self.max_future_ms < 0:
            msg = "allowed_lateness_ms and max_future_ms must be >= 0"
            raise ValueError(msg)


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
    """Advance the state by one batch of readings (any order, duplicates allowed)."""
    incoming = (
        readings.select(list(READING_SCHEMA))
        .cast(READING_SCHEMA)
        .unique(  # type: ignore[arg-type]
            DEDUP_KEY, keep="first", maintain_order=True
        )
    )
    fresh = incoming.join(state.buffer.select(DEDUP_KEY), on=DEDUP_KEY, how="anti")
    duplicates = readings.height - fresh.height

    widest_ms = max(params.widths_s) * 1000
    final_end = bucket_start(max(params.widths_s)) + widest_ms
    checked = fresh.join(state.watermarks, on="device_id", how="left").with_columns(
        reason=pl.when(pl.col("ts_ms") > now_ms + params.max_future_ms)
        .then(pl.lit("future_ts"))
        .when(final_end + params.allowed_lateness_ms < pl.col("watermark_ms"))
        .then(pl.lit("too_late"))
        .otherwise(None)
    )
    rejected = checked.filter(pl.col("reason").is_not_null()).with_columns(
        detail=pl.format(
            "event time {} ms; device watermark {} ms; lateness {} ms",
            "ts_ms",
            "watermark_ms",
            pl.lit(params.allowed_lateness_ms),
        )
    )
    accepted = checked.filter(pl.col("reason").is_null()).select(list(READING_SCHEMA))

    watermarks = _advance(state.watermarks, accepted, now_ms)
    buffer = pl.concat([state.buffer, accepted.with_columns(anchor=pl.lit(False))]).sort(
        [*KEY, "ts_ms"]
    )
    intervals = _freeze_intervals(state.intervals, buffer)
    new_state = replace(state, buffer=buffer, watermarks=watermarks, intervals=intervals)
    return _emit_and_evict(
        new_state,
        params,
        rejected=rejected.drop("watermark_ms", "last_seen_ms"),
        duplicates=duplicates,
    )


def close_idle(
    state: EventTimeState, *, now_ms: int, idle_ms: int, params: EventTimeParams
) -> StepResult:
    """Close the open windows of devices not heard from for ``idle_ms`` (``idle_ms=0``: all)."""
    widest_ms = max(params.widths_s) * 1000
    ends = (
        state.buffer.filter(~pl.col("anchor"))
        .group_by("device_id")
        .agg(end_ms=(bucket_start(max(params.widths_s)) + widest_ms).max())
    )
    watermarks = (
        state.watermarks.join(ends, on="device_id", how="left")
        .with_columns(
            watermark_ms=pl.when(pl.col("last_seen_ms") <= now_ms - idle_ms)
            .then(pl.max_horizontal("watermark_ms", pl.col("end_ms") + 1))
            .otherwise(pl.col("watermark_ms"))
        )
        .drop("end_ms")
    )
    return _emit_and_evict(
        replace(state, watermarks=watermarks), params, rejected=_no_rejections(), duplicates=0
    )


def _emit_and_evict(
    state: EventTimeState, params: EventTimeParams, *, rejected: pl.DataFrame, duplicates: int
) -> StepResult:
    cleaned = clean(
        state.buffer.drop("anchor"),
        intervals=state.intervals,
        register_max=state.register_max,
        reference=_NO_REFERENCE if state.reference is None else state.reference,
        params=params.clean,
    ).with_columns(anchor=state.buffer["anchor"])
    live = cleaned.filter(~pl.col("anchor"))
    widest_ms = max(params.widths_s) * 1000
    wm = state.watermarks.select("device_id", "watermark_ms")
    current = pl.concat(
        [
            aggregate(live, w, min_coverage=params.min_coverage, presorted=True)
            for w in params.widths_s
        ]
    )
    closed = current.join(wm, on="device_id", how="left").filter(
        pl.col("bucket_start_ms") + pl.col("width_s") * 1000 < pl.col("watermark_ms")
    )
    before = state.emitted.select([*WINDOW_KEY, "actual", "n_readings", "flags", "revision"])
    joined = closed.join(before, on=WINDOW_KEY, how="left", suffix="_was")
    changed = (
        pl.col("revision").is_null()
        | (pl.col("n_readings") != pl.col("n_readings_was"))
        | (pl.col("flags") != pl.col("flags_was"))
        | ((pl.col("actual") - pl.col("actual_was")).abs() > 1e-9 * (1 + pl.col("actual").abs()))
    )
    out = (
        joined.filter(changed)
        .with_columns(revision=pl.col("revision").fill_null(0) + 1)
        .select([*current.columns, "revision"])
        .sort(WINDOW_KEY)
    )
    emitted = (
        pl.concat([state.emitted.join(out, on=WINDOW_KEY, how="anti"), out])
        .join(wm, on="device_id", how="left")
        .filter(
            (pl.col("bucket_start_ms") // widest_ms) * widest_ms
            + (widest_ms + params.allowed_lateness_ms)
            >= pl.col("watermark_ms")
        )
        .drop("watermark_ms")
    )
    buffer = _evict(state.buffer, wm, params)
    return StepResult(
        state=replace(state, buffer=buffer, emitted=emitted),
        windows=out,
        rejected=rejected,
        duplicates=duplicates,
    )


def _evict(buffer: pl.DataFrame, wm: pl.DataFrame, params: EventTimeParams) -> pl.DataFrame:
    """Drop final readings, keeping the last few per key as anchors.

    The buffer is sorted by (device, metric, time) and finality is a time threshold per device,
    so a key's final rows are a prefix of its rows: positions come from array arithmetic.
    """
    if buffer.is_empty():
        return buffer
    widest_ms = max(params.widths_s) * 1000
    marks = buffer.join(wm, on="device_id", how="left", maintain_order="left").select(
        final=(
            bucket_start(max(params.widths_s)) + widest_ms + params.allowed_lateness_ms
            < pl.col("watermark_ms")
        ).fill_null(False),
        first=(
            (pl.col("device_id") != pl.col("device_id").shift())
            | (pl.col("metric") != pl.col("metric").shift())
        ).fill_null(True),
        keep_n=pl.when(pl.col("kind").is_in(list(params.clean.stuck_kinds)))
        .then(params.clean.stuck_run - 1)
        .otherwise(1),
    )
    final = marks["final"].to_numpy()
    key = np.cumsum(marks["first"].to_numpy()) - 1
    start = np.flatnonzero(marks["first"].to_numpy())
    n_final = np.bincount(key, final, len(start)).astype(np.int64)
    position = np.arange(buffer.height) - start[key]
    keep = ~final | (position >= n_final[key] - marks["keep_n"].to_numpy())
    return buffer.with_columns(anchor=pl.Series(final)).filter(pl.Series(keep))


def _advance(watermarks: pl.DataFrame, accepted: pl.DataFrame, now_ms: int) -> pl.DataFrame:
    seen = accepted.group_by("device_id").agg(batch_max=pl.col("ts_ms").max())
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


def _freeze_intervals(intervals: pl.DataFrame, buffer: pl.DataFrame) -> pl.DataFrame:
    """Infer the interval of keys seen for the first time with at least 3 readings."""
    new_keys = (
        buffer.filter(~pl.col("anchor")).select(KEY).unique().join(intervals, on=KEY, how="anti")
    )
    if new_keys.is_empty():
        return intervals
    unknown = buffer.join(new_keys, on=KEY, how="semi")
    counts = unknown.group_by(KEY).agg(n=pl.len()).filter(pl.col("n") >= 3).drop("n")
    new = infer_intervals(unknown.join(counts, on=KEY, how="semi"))
    return pl.concat([intervals, new.select(intervals.columns)]) if new.height else intervals


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
    frame = frame.unique(DEDUP_KEY, keep="first").sort([*KEY, "ts_ms"])
    watermarks = frame.group_by("device_id").agg(
        watermark_ms=pl.col("ts_ms").max(), last_seen_ms=pl.lit(now_ms, pl.Int64)
    )
    base = EventTimeState()
    buffer = _evict(
        frame.with_columns(anchor=pl.lit(False)),
        watermarks.select("device_id", "watermark_ms"),
        params,
    )
    known = base.intervals if intervals is None else intervals.select(base.intervals.columns)
    return EventTimeState(
        buffer=buffer,
        emitted=emitted.select(base.emitted.columns).cast(base.emitted.schema),  # type: ignore[arg-type]
        watermarks=watermarks.select(base.watermarks.columns),
        intervals=_freeze_intervals(known, buffer),
        register_max=register_max,
        reference=reference,
    )
