"""Fit a pilot's baselines from history read through a provider that the caller passes in.

The provider is any callable ``(device_ids, metric, start_ms, end_ms) -> frame`` returning hourly
rows ``device_id, ts_ms, usage, temperature`` (storage queries in production, in-memory frames
in tests). Fitting works in blocks of devices and reports progress through a callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import polars as pl

from processors.baselines.daily import DailyParams, fit_daily
from processors.baselines.exclusions import drop_excluded, no_periods, periods_in
from processors.baselines.hourly import HourlyParams, fit_hourly
from processors.baselines.model import FittedModel
from processors.baselines.tow import fit_tow

HistoryProvider = Callable[[Sequence[str], str, int, int], pl.DataFrame]
Progress = Callable[[int, int], None]  # (devices done, devices total)
Method = Literal["daily", "hourly", "auto", "tow"]
DAY_MS = 86_400_000


def to_daily(hourly: pl.DataFrame, *, tz: str, min_hours: int = 20) -> pl.DataFrame:
    """Hourly rows -> one row per device and local day (usage sum, mean temperature).

    A day with fewer than ``min_hours`` usable hours gets a null usage (counted as missing).
    """
    local_day = (
        pl.from_epoch("ts_ms", "ms").dt.replace_time_zone("UTC").dt.convert_time_zone(tz).dt.date()
    )
    return (
        hourly.filter(pl.col("usage").is_finite())
        .with_columns(day=local_day)
        .group_by("device_id", "day")
        .agg(
            usage=pl.col("usage").sum(),
            temperature=pl.col("temperature").mean(),
            hours=pl.len(),
        )
        .with_columns(
            usage=pl.when(pl.col("hours") >= min_hours).then(pl.col("usage")),
            day_ms=pl.col("day")
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
            .dt.epoch("ms"),
        )
        .sort("device_id", "day")
    )


def fit_devices(
    history: HistoryProvider,
    *,
    device_ids: Sequence[str],
    metric: str,
    tz: str,
    period: tuple[int, int],
    method: Method = "auto",
    fuel: str = "electricity",
    periods: pl.DataFrame | None = None,
    progress: Progress | None = None,
    block: int = 100,
) -> list[FittedModel]:
    """Fit one model per device over ``period`` with ``method``.

    ``auto`` fits the hourly model and, for devices where it is not usable (insufficient data or
    ASHRAE thresholds missed), the daily model; the daily one is kept if it is usable.
    Excluded periods (``periods``, see :mod:`processors.baselines.exclusions`) are cut first.
    """
    periods = no_periods() if periods is None else periods
    excluded = periods_in(periods, *period)
    models: list[FittedModel] = []
    for start in range(0, len(device_ids), block):
        ids = list(device_ids[start : start + block])
        rows = drop_excluded(history(ids, metric, *period), periods)
        models += _fit_block(
            rows, metric=metric, tz=tz, period=period, method=method, fuel=fuel, excluded=excluded
        )
        if progress is not None:
            progress(min(start + block, len(device_ids)), len(device_ids))
    return models


def _fit_block(
    rows: pl.DataFrame,
    *,
    metric: str,
    tz: str,
    period: tuple[int, int],
    method: Method,
    fuel: str,
    excluded: tuple[tuple[int, int], ...],
) -> list[FittedModel]:
    if method == "tow":
        return fit_tow(rows, tz=tz, metric=metric, period=period, excluded=excluded)
    if method == "daily":
        return _daily(rows, metric=metric, tz=tz, period=period, fuel=fuel, excluded=excluded)
    hourly = fit_hourly(
        rows, tz=tz, metric=metric, period=period, excluded=excluded, params=HourlyParams()
    )
    if method == "hourly":
        return hourly
    weak = [m.device_id for m in hourly if not m.usable]
    if not weak:
        return hourly
    daily = {
        m.device_id: m
        for m in _daily(
            rows.filter(pl.col("device_id").is_in(weak)),
            metric=metric,
            tz=tz,
            period=period,
            fuel=fuel,
            excluded=excluded,
        )
    }
    return [
        daily[m.device_id] if m.device_id in daily and daily[m.device_id].usable else m
        for m in hourly
    ]


def _daily(
    rows: pl.DataFrame,
    *,
    metric: str,
    tz: str,
    period: tuple[int, int],
    fuel: str,
    excluded: tuple[tuple[int, int], ...],
) -> list[FittedModel]:
    days = to_daily(rows, tz=tz)
    return [
        fit_daily(
            group,
            device_id=str(key[0]),
            metric=metric,
            period=period,
            excluded=excluded,
            params=DailyParams(fuel=fuel),
        )
        for key, group in days.group_by("device_id", maintain_order=True)
    ]
