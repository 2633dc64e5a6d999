"""Baseline prediction for stream windows, whatever model each device has.

Windows of up to an hour get the hourly prediction of the hour they fall in, scaled by their width
(a 15-minute window gets a quarter). Daily models, driven by the local day's mean temperature,
spread the day's prediction evenly over its hours: right for totals over days, not for the shape
within a day.
"""

from __future__ import annotations

import polars as pl

from processors.baselines.daily import predict_daily
from processors.baselines.hourly import predict_hourly
from processors.baselines.model import FittedModel
from processors.baselines.tow import predict_tow

HOUR_MS = 3_600_000


def predict_windows(
    models: list[FittedModel],
    windows: pl.DataFrame,
    *,
    tz: str,
    temperature: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add ``baseline`` and ``baseline_model_id`` to windows, in input order.

    Args:
        models: at most one model per (device, metric).
        windows: ``device_id``, ``metric``, ``bucket_start_ms``, ``width_s`` (<= 3600).
        tz: IANA time zone of the site.
        temperature: ``ts_ms`` (hour start, UTC ms) and ``temperature`` (Celsius) of the site,
            needed by hourly and daily models; their windows get a null baseline without it.
    """
    rows = windows.with_row_index("_pred_row").with_columns(
        _hour=(pl.col("bucket_start_ms") // HOUR_MS) * HOUR_MS
    )
    if temperature is not None:
        rows = rows.join(
            temperature.select(pl.col("ts_ms").alias("_hour"), "temperature"),
            on="_hour",
            how="left",
            maintain_order="left",
        )
    else:
        rows = rows.with_columns(temperature=pl.lit(None, pl.Float64))
    parts = []
    for method in ("tow", "hourly", "daily"):
        chosen = [m for m in models if m.method == method]
        if not chosen:
            continue
        keys = pl.DataFrame(
            {"device_id": [m.device_id for m in chosen], "metric": [m.metric for m in chosen]},
            schema={"device_id": pl.String, "metric": pl.String},
        )
        sub = rows.join(keys, on=["device_id", "metric"], how="semi")
        if sub.is_empty():
            continue
        scale = pl.col("width_s") / 3600.0
        if method == "tow":
            pred = predict_tow(chosen, sub.with_columns(ts_ms=pl.col("bucket_start_ms")), tz=tz)
        elif method == "hourly":
            pred = predict_hourly(chosen, sub.with_columns(ts_ms=pl.col("_hour")), tz=tz)
            pred = pred.with_columns(baseline=pl.col("baseline") * scale)
        else:
            daily_temp = _daily_temperature(sub, temperature, tz)
            pred = predict_daily(chosen, daily_temp).with_columns(
                baseline=pl.col("baseline") / 24 * scale
            )
        parts.append(pred.select("_pred_row", "baseline", "baseline_model_id"))
    schema = {"_pred_row": pl.UInt32, "baseline": pl.Float64, "baseline_model_id": pl.String}
    found = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    out = (
        windows.with_row_index("_pred_row")
        .join(found, on="_pred_row", how="left")
        .sort("_pred_row")
        .drop("_pred_row")
    )
    return out.with_columns(pl.col("baseline_model_id").fill_null(""))


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
