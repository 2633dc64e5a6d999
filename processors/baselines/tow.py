"""Time-of-week baseline: the mean per hour of week over the baseline period.

The baseline for counts (mobility counters: "the same time-of-week counts before the
intervention") and the quick-start baseline for any additive metric before enough history exists
for the temperature models. An optional control site scales it by how the control moved.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from processors.baselines.hourly import N_TOW, calendar_of, local_calendar
from processors.baselines.metrics import grouped_fit_metrics
from processors.baselines.model import FittedModel, stacked

DAY_MS = 86_400_000


def fit_tow(
    frame: pl.DataFrame,
    *,
    tz: str,
    metric: str,
    period: tuple[int, int],
    excluded: tuple[tuple[int, int], ...] = (),
    min_days: int = 28,
    min_per_slot: int = 2,
) -> list[FittedModel]:
    """Fit a time-of-week model per device.

    Args:
        frame: ``device_id``, ``ts_ms`` (hour start, UTC ms), ``usage`` (amount per hour).
        tz: IANA time zone (hours of week are local).
        metric: metric of ``usage``.
        period: baseline period, UTC ms, half-open.
        excluded: periods cut from fitting, recorded in the models.
        min_days: shortest sufficient baseline period.
        min_per_slot: observations each hour of week needs (else ``tow_slots_sparse``).
    """
    rows = (
        frame.filter(pl.col("usage").is_finite())
        .with_columns(local_calendar("ts_ms", tz))
        .sort("device_id", "ts_ms")
    )
    devices = rows["device_id"].unique(maintain_order=True).to_list()
    dev = rows["device_id"].rank("dense").cast(pl.Int64).to_numpy() - 1
    y = rows["usage"].to_numpy().astype(np.float64)
    cell = dev * N_TOW + rows["tow"].to_numpy()
    size = len(devices) * N_TOW
    count = np.bincount(cell, minlength=size).reshape(-1, N_TOW)
    total = np.bincount(cell, y, size).reshape(-1, N_TOW)
    overall = total.sum(axis=1) / np.maximum(count.sum(axis=1), 1)
    means = np.where(count > 0, total / np.maximum(count, 1), overall[:, None])
    yhat = means.reshape(-1)[cell]
    metrics = grouped_fit_metrics(dev, y, yhat, np.full(len(devices), N_TOW), "hourly")
    short = (period[1] - period[0]) / DAY_MS < min_days
    out = []
    for i, d in enumerate(devices):
        reasons = ["baseline_too_short"] if short else []
        if count[i].min() < min_per_slot:
            reasons.append("tow_slots_sparse")
        out.append(
            FittedModel(
                method="tow",
                device_id=d,
                metric=metric,
                period_start_ms=period[0],
                period_end_ms=period[1],
                params={"means": np.round(means[i], 9).tolist()},
                metrics=metrics[i],
                sufficient=not reasons,
                reasons=tuple(reasons),
                excluded=excluded,
            )
        )
    return out


def predict_tow(models: list[FittedModel], frame: pl.DataFrame, *, tz: str) -> pl.DataFrame:
    """Predictions of many devices' time-of-week models for windows of any width up to an hour.

    Args:
        models: time-of-week models, one per device.
        frame: ``device_id``, ``ts_ms`` (window start, UTC ms) and optionally ``width_s`` (default
            3600); a window shorter than an hour gets its share of the hourly mean.
        tz: IANA time zone.

    Returns:
        ``frame`` with ``baseline`` (null where the device has no model) and ``baseline_model_id``.
    """
    index, means = stacked(models, "means", (N_TOW,))
    index = index.drop("metric")
    rows = frame.join(index, on="device_id", how="left", maintain_order="left")
    rows = rows.join(calendar_of(rows["ts_ms"], tz), on="ts_ms", how="left", maintain_order="left")
    known = rows["_m"].is_not_null().to_numpy()
    hourly = means[rows["_m"].fill_null(0).to_numpy(), rows["tow"].to_numpy()] if len(means) else 0
    width = rows["width_s"].to_numpy() if "width_s" in rows.columns else 3600
    pred = np.where(known, hourly * (width / 3600.0), np.nan)
    return rows.drop("_m", "month", "tow").with_columns(
        baseline=pl.Series(pred, dtype=pl.Float64).fill_nan(None)
    )


def control_ratio(control_actual: float, control_baseline: float) -> float:
    """Scale for a site's baseline from a control site: how the control moved without the pilot."""
    if control_baseline <= 0:
        msg = "control baseline must be positive"
        raise ValueError(msg)
    return control_actual / control_baseline
