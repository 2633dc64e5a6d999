"""Baseline prediction for stream windows, whatever model each device has.

Windows of up to an hour get the hourly prediction of the hour they fall in, scaled by their width
(a 15-minute window gets a quarter). Daily models, driven by the local day's mean temperature,
spread the day's prediction evenly over its hours: right for totals over days, not for the shape
within a day.

Each window finds its model by (device, metric) once per run of equal keys (windows come sorted
by key); time-of-week models, the stream's usual case, are evaluated here on arrays, the others
by their method's ``predict_*`` on the windows of one metric at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter, is_

import numpy as np
import polars as pl

from processors.baselines.daily import predict_daily
from processors.baselines.daylight import METHOD as METHOD_DAYLIGHT
from processors.baselines.daylight import predict_daylight
from processors.baselines.hourly import N_TOW, calendar_of, local_calendar, predict_hourly
from processors.baselines.model import FittedModel, RecentBuilds, stacked
from processors.kernels.keys import changes

HOUR_MS = 3_600_000
QUARTER_MS = 900_000
_DENSE_QUARTERS = 8_192  # at most this many quarters (~12 weeks) get a dense calendar
_KEY = ["device_id", "metric"]
_MODEL_ID = attrgetter("model_id")


def predict_windows(
    models: list[FittedModel],
    windows: pl.DataFrame,
    *,
    tz: str,
    temperature: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add ``baseline`` and ``baseline_model_id`` to windows, in input order.

    Args:
        models: at most one model per (device, metric) (a repeated key uses its first model).
        windows: ``device_id``, ``metric``, ``bucket_start_ms``, ``width_s`` (<= 3600).
        tz: IANA time zone of the site.
        temperature: ``ts_ms`` (hour start, UTC ms) and ``temperature`` (Celsius) of the site,
            needed by hourly and daily models; their windows get a null baseline without it.
    """
    n = windows.height
    table = _table(models)
    which = _model_of(table, windows)  # position in ``models`` per window, -1: none
    tow_at = table.tow_at[which]  # row of the window's model in ``table.means``, -1: not tow
    if n and tow_at.min() >= 0:  # time-of-week models only (the stream's case): one pass
        baseline = _predict_tow(table.means, tow_at, windows, tz)
        missing = np.isnan(baseline)
    else:
        baseline, missing = _predict_mixed(models, windows, which, tow_at, table, tz, temperature)
    return windows.with_columns(
        baseline=pl.Series(baseline, dtype=pl.Float64).scatter(np.flatnonzero(missing), None),
        baseline_model_id=table.ids.gather(np.where(which >= 0, which, len(models))),
    )


def _predict_mixed(
    models: list[FittedModel],
    windows: pl.DataFrame,
    which: np.ndarray,
    tow_at: np.ndarray,
    table: _Table,
    tz: str,
    temperature: pl.DataFrame | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline (NaN where none) and null mask of windows with any mix of models or none."""
    n = windows.height
    baseline = np.full(n, np.nan)
    missing = np.ones(n, dtype=bool)  # null baseline
    tow = np.flatnonzero(tow_at >= 0)
    if len(tow):
        value = _predict_tow(
            table.means, tow_at[tow], windows[tow] if len(tow) < n else windows, tz
        )
        baseline[tow] = value
        missing[tow] = np.isnan(value)
    other = np.flatnonzero((which >= 0) & (tow_at < 0))
    if len(other):
        rows = windows[other].with_columns(
            _pred_row=pl.Series(other, dtype=pl.Int64),
            _model=pl.Series(which[other], dtype=pl.Int64),
        )
        for part in _predict_other(models, rows, tz, temperature):
            at = part["_pred_row"].to_numpy()
            baseline[at] = part["baseline"].fill_null(np.nan).to_numpy()
            missing[at] = part["baseline"].is_null().to_numpy()
    return baseline, missing


@dataclass(frozen=True, slots=True)
class _Table:
    """The models as lookup tables (one per model list: a processor predicts with the same
    models poll after poll)."""

    index: pl.DataFrame  # device_id, metric, _model: first position of each key
    metric: str | None  # the metric of every model when they share one (the usual case)
    ids: pl.Series  # model id per position, plus "" for "no model"
    tow_at: np.ndarray  # per position (plus -1 for "no model"): row in ``means``, -1: not tow
    means: np.ndarray  # (tow models, hours of week) time-of-week means


def _table(models: list[FittedModel]) -> _Table:
    """The models' table: the last one when called with the same model objects again (checked
    by identity, cheaper than hashing every model id), else the one built for these ids."""
    if _LAST and len(_LAST[0][0]) == len(models) and all(map(is_, models, _LAST[0][0])):
        return _LAST[0][1]
    table = _TABLES.get(tuple(map(_MODEL_ID, models)), lambda: _build_table(models))
    _LAST[:] = [(tuple(models), table)]
    return table


def _build_table(models: list[FittedModel]) -> _Table:
    index = pl.DataFrame(
        {
            "device_id": [m.device_id for m in models],
            "metric": [m.metric for m in models],
            "_model": np.arange(len(models), dtype=np.int64),
        },
        schema={"device_id": pl.String, "metric": pl.String, "_model": pl.Int64},
    ).unique(_KEY, keep="first", maintain_order=True)
    tow = [i for i, m in enumerate(models) if m.method == "tow"]
    tow_at = np.full(len(models) + 1, -1, dtype=np.int64)
    tow_at[tow] = np.arange(len(tow))
    _, means = stacked([models[i] for i in tow], "means", (N_TOW,))
    metrics = {m.metric for m in models}
    return _Table(
        index=index,
        metric=metrics.pop() if len(metrics) == 1 else None,
        ids=pl.Series([m.model_id for m in models] + [""], dtype=pl.String),
        tow_at=tow_at,
        means=means,
    )


_TABLES: RecentBuilds[_Table] = RecentBuilds()
_LAST: list[tuple[tuple[FittedModel, ...], _Table]] = []  # the last models and their table


def _model_of(table: _Table, windows: pl.DataFrame) -> np.ndarray:
    """Position of each window's model (-1: none), joined once per run of one key.

    When every model has the same metric (the usual case) the join is on ``device_id`` alone:
    windows of that metric find their device's model, the others none, so one string column is
    hashed instead of a pair of them.
    """
    n = windows.height
    if n == 0 or table.index.is_empty():
        return np.full(n, -1, dtype=np.int64)
    device = windows["device_id"]
    if table.metric is None:
        starts = np.flatnonzero(changes(device) | changes(windows["metric"]))
        found = windows.select(_KEY)[starts].join(
            table.index, on=_KEY, how="left", maintain_order="left"
        )
        at = found["_model"].fill_null(-1).to_numpy()
    else:
        same = (windows["metric"] == table.metric).fill_null(False).to_numpy()
        flips = np.ones(n, dtype=bool)
        flips[1:] = same[1:] != same[:-1]
        starts = np.flatnonzero(changes(device) | flips)
        found = (
            device.gather(starts)
            .to_frame("device_id")
            .join(table.index.drop("metric"), on="device_id", how="left", maintain_order="left")
        )
        at = np.where(same[starts], found["_model"].fill_null(-1).to_numpy(), -1)
    return np.repeat(at, np.diff(np.append(starts, n)))


def _predict_tow(means: np.ndarray, row: np.ndarray, windows: pl.DataFrame, tz: str) -> np.ndarray:
    """Time-of-week predictions of windows (``row``: their model's row in ``means``).

    The same arithmetic as :func:`~processors.baselines.tow.predict_tow`: the local hour of
    week's mean, times the window's share of an hour.
    """
    # one flat gather: cheaper than numpy's two-array fancy indexing
    hourly = means.ravel().take(row * N_TOW + _hour_of_week(windows["bucket_start_ms"], tz))
    width = windows["width_s"].to_numpy() if "width_s" in windows.columns else 3600
    out: np.ndarray = hourly * (width / 3600.0)
    return out


def _hour_of_week(start: pl.Series, tz: str) -> np.ndarray:
    """Local hour of week (0-167) of each UTC ms window start.

    Window starts are whole quarters a few hours apart: they index a calendar of quarters kept
    per time zone (no hashing or sorting of the starts, no time-zone conversion per poll). Other
    starts (a long span, not whole quarters, nulls) take the calendar of their distinct values,
    found by sorted search.
    """
    values = start.to_numpy()
    if start.dtype == pl.Int64 and start.null_count() == 0 and len(values):
        quarter = values // QUARTER_MS
        low, high = int(quarter.min()), int(quarter.max())
        if high - low < _DENSE_QUARTERS and np.array_equal(quarter * QUARTER_MS, values):
            quarters = _quarter_calendar(tz, low, high)
            at: np.ndarray = quarters.tow[quarter - quarters.low]
            return at
    calendar = calendar_of(start, tz).sort("ts_ms")
    slot = np.searchsorted(calendar["ts_ms"].to_numpy(), values)
    out: np.ndarray = calendar["tow"].to_numpy()[slot]
    return out


@dataclass(frozen=True, slots=True)
class _Quarters:
    """Local hours of week of consecutive quarters of one time zone."""

    low: int  # first quarter (UTC ms // QUARTER_MS)
    tow: np.ndarray  # hour of week of each quarter from ``low`` on


_WEEK_QUARTERS = 7 * 24 * 4
_CALENDARS: dict[str, _Quarters] = {}  # per time zone, around the latest windows
_CALENDARS_MAX = 64  # time zones kept


def _quarter_calendar(tz: str, low: int, high: int) -> _Quarters:
    """A calendar of ``tz`` covering quarters ``low`` to ``high``.

    Computed a week before ``low`` to two weeks after ``high``, so a stream moving forward
    converts time zones once per two weeks of event time, and late windows still fall in it.
    """
    kept = _CALENDARS.get(tz)
    if kept is not None and kept.low <= low and high < kept.low + len(kept.tow):
        return kept
    first, last = low - _WEEK_QUARTERS, high + 2 * _WEEK_QUARTERS
    grid = pl.DataFrame({"ts_ms": np.arange(first, last + 1, dtype=np.int64) * QUARTER_MS})
    tow = grid.select(local_calendar("ts_ms", tz)[1]).to_series().to_numpy()
    if len(_CALENDARS) >= _CALENDARS_MAX:
        _CALENDARS.clear()
    _CALENDARS[tz] = calendar = _Quarters(low=first, tow=tow)
    return calendar


def _predict_other(
    models: list[FittedModel], rows: pl.DataFrame, tz: str, temperature: pl.DataFrame | None
) -> list[pl.DataFrame]:
    """Hourly and daily predictions (``_pred_row``, ``baseline``), one metric at a time."""
    rows = rows.with_columns(_hour=(pl.col("bucket_start_ms") // HOUR_MS) * HOUR_MS)
    if temperature is not None:
        rows = rows.join(
            temperature.select(pl.col("ts_ms").alias("_hour"), "temperature"),
            on="_hour",
            how="left",
            maintain_order="left",
        )
    else:
        rows = rows.with_columns(temperature=pl.lit(None, pl.Float64))
    method = pl.Series([m.method for m in models], dtype=pl.String)
    rows = rows.with_columns(_method=method.gather(rows["_model"]))
    scale = pl.col("width_s") / 3600.0
    parts = []
    for (name, _), sub in rows.group_by("_method", "metric", maintain_order=True):
        chosen = [models[i] for i in np.unique(sub["_model"].to_numpy())]  # one per device
        if name == METHOD_DAYLIGHT:  # darkness-driven: no temperature, the window's own dark share
            pred = predict_daylight(chosen, sub, tz=tz)
        elif name == "hourly":
            pred = predict_hourly(chosen, sub.with_columns(ts_ms=pl.col("_hour")), tz=tz)
            pred = pred.with_columns(baseline=pl.col("baseline") * scale)
        else:
            daily_temp = _daily_temperature(sub, temperature, tz)
            pred = predict_daily(chosen, daily_temp).with_columns(
                baseline=pl.col("baseline") / 24 * scale
            )
        parts.append(pred.select("_pred_row", "baseline"))
    return parts


def _local_day(col: str, tz: str) -> pl.Expr:
    return pl.from_epoch(col, "ms").dt.replace_time_zone("UTC").dt.convert_time_zone(tz).dt.date()


def _daily_temperature(
    rows: pl.DataFrame, temperature: pl.DataFrame | None, tz: str
) -> pl.DataFrame:
    """Rows with ``temperature`` replaced by the mean of their local day (daily models' driver)."""
    if temperature is None:
        return rows
    means = temperature.group_by(_local_day("ts_ms", tz).alias("_day")).agg(
        _day_temp=pl.col("temperature").mean()
    )
    return (
        rows.with_columns(_day=_local_day("bucket_start_ms", tz))
        .join(means, on="_day", how="left", maintain_order="left")
        .with_columns(temperature=pl.col("_day_temp"))
        .drop("_day", "_day_temp")
    )
