"""Darkness-driven baseline for street lighting: energy follows the hours without daylight.

A lighting cabinet switches on at dusk and off at dawn, and dims on a clock schedule, so its
energy in an hour is ``coef[local hour] * dark share of that hour``: the coefficient is the power
of that hour of the night (full or dimmed), the dark share is how much of the hour the sun is more
than 0.833 degrees below the horizon (sunset/sunrise with refraction) at the site. A time-of-week
model fitted in January over-predicts March, when nights are hours shorter; this one does not.

Sun position: NOAA's general solar position formulas (fractional year, equation of time,
declination); accurate to a few minutes, enough for hourly energy.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from processors.baselines.metrics import grouped_fit_metrics
from processors.baselines.model import FittedModel

METHOD = "daylight"
HOUR_MS = 3_600_000
QUARTER_MS = 900_000
DUSK_SIN = float(np.sin(np.deg2rad(-0.833)))  # the sun's elevation sine at sunset/sunrise
MIN_COVERAGE = 0.9  # share of the period's hours a sufficient fit needs
OUTLIER_MADS = 10.0  # residuals beyond this many median absolute deviations: data anomalies


def sun_elevation_sin(ts_ms: np.ndarray, lat: float, lon: float) -> np.ndarray:
    """Sine of the sun's elevation at UTC times ``ts_ms`` seen from (lat, lon) degrees."""
    t = np.asarray(ts_ms, dtype="datetime64[ms]")
    year = t.astype("datetime64[Y]")
    days = (t - year) / np.timedelta64(1, "D")  # days since 1 January 00:00 UTC, fractional
    y = year.astype(np.int64) + 1970
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    g = 2 * np.pi / np.where(leap, 366.0, 365.0) * (days - 0.5)  # fractional year, radians
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * np.cos(g)
        - 0.032077 * np.sin(g)
        - 0.014615 * np.cos(2 * g)
        - 0.040849 * np.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * np.cos(g)
        + 0.070257 * np.sin(g)
        - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g)
        - 0.002697 * np.cos(3 * g)
        + 0.00148 * np.sin(3 * g)
    )
    solar_min = np.mod(days, 1.0) * 1440.0 + eqtime + 4.0 * lon  # true solar time, minutes
    hour_angle = np.deg2rad(solar_min / 4.0 - 180.0)
    phi = np.deg2rad(lat)
    out: np.ndarray = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)
    return out


def dark_share(start_ms: np.ndarray, width_s: np.ndarray, lat: float, lon: float) -> np.ndarray:
    """Share of each window ``[start, start + width)`` in darkness, sampled per quarter hour."""
    start = np.asarray(start_ms, dtype=np.int64)
    quarters = np.maximum(np.asarray(width_s, dtype=np.int64) * 1000 // QUARTER_MS, 1)
    most = int(quarters.max()) if len(quarters) else 1
    k = np.arange(most)
    mid = start[:, None] + k[None, :] * QUARTER_MS + QUARTER_MS // 2
    dark = sun_elevation_sin(mid.ravel(), lat, lon).reshape(mid.shape) < DUSK_SIN
    used = k[None, :] < quarters[:, None]
    out: np.ndarray = (dark & used).sum(axis=1) / quarters
    return out


def _local_hour(ts_ms: pl.Series, tz: str) -> np.ndarray:
    hour = pl.from_epoch(ts_ms, "ms").dt.replace_time_zone("UTC").dt.convert_time_zone(tz).dt.hour()
    return hour.to_numpy().astype(np.int64)


def fit_daylight(
    frame: pl.DataFrame,
    *,
    metric: str,
    tz: str,
    period: tuple[int, int],
    lat: float,
    lon: float,
) -> list[FittedModel]:
    """One darkness model per device from hourly ``device_id``, ``ts_ms`` (hour start), ``usage``.

    Robust to meter spikes: a cell's coefficient is the median of ``usage / dark share`` over its
    hours at least half dark, and hours off by more than ``OUTLIER_MADS`` median absolute
    deviations of the device's residuals (spikes, glitches) are left out of the fit metrics.
    """
    rows = frame.filter(pl.col("usage").is_finite()).sort("device_id", "ts_ms")
    if rows.is_empty():
        return []
    devices, group = np.unique(rows["device_id"].to_numpy().astype(str), return_inverse=True)
    ts = rows["ts_ms"].to_numpy()
    y = rows["usage"].to_numpy().astype(np.float64)
    dark = dark_share(ts, np.full(len(ts), 3600), lat, lon)
    cell = group * 24 + _local_hour(rows["ts_ms"], tz)
    size = len(devices) * 24
    night = dark >= 0.5
    ratios = pl.DataFrame({"cell": cell[night], "r": y[night] / dark[night]})
    medians = ratios.group_by("cell").agg(pl.col("r").median())
    coef = np.zeros(size)
    coef[medians["cell"].to_numpy()] = medians["r"].to_numpy()
    yhat = coef[cell] * dark
    resid = y - yhat
    spread = pl.DataFrame({"g": group, "a": np.abs(resid)}).group_by("g").agg(pl.col("a").median())
    mad = np.zeros(len(devices))
    mad[spread["g"].to_numpy()] = spread["a"].to_numpy()
    keep = np.abs(resid) <= OUTLIER_MADS * np.maximum(mad[group], 1e-9) + 1e-9
    p = np.maximum((np.bincount(cell[night], minlength=size) > 0).reshape(-1, 24).sum(axis=1), 1)
    metrics = grouped_fit_metrics(group[keep], y[keep], yhat[keep], p.astype(np.float64), "hourly")
    hours = np.bincount(group, minlength=len(devices))
    need = MIN_COVERAGE * (period[1] - period[0]) / HOUR_MS
    return [
        FittedModel(
            method=METHOD,
            device_id=str(d),
            metric=metric,
            period_start_ms=period[0],
            period_end_ms=period[1],
            params={"coef": coef[i * 24 : (i + 1) * 24].tolist(), "lat": lat, "lon": lon},
            metrics=metrics[i],
            sufficient=bool(hours[i] >= need),
            reasons=() if hours[i] >= need else ("too_few_hours",),
        )
        for i, d in enumerate(devices)
    ]


def predict_daylight(models: list[FittedModel], frame: pl.DataFrame, *, tz: str) -> pl.DataFrame:
    """``frame`` (``device_id``, ``bucket_start_ms``, ``width_s``) + ``baseline`` (null: no model)."""
    out = np.full(frame.height, np.nan)
    if not models or frame.is_empty():
        return frame.with_columns(baseline=pl.Series(out, dtype=pl.Float64).fill_nan(None))
    index = pl.DataFrame(
        {"device_id": [m.device_id for m in models], "_m": np.arange(len(models))},
        schema={"device_id": pl.String, "_m": pl.Int64},
    ).unique("device_id", keep="first")
    which = (
        frame.select("device_id")
        .join(index, on="device_id", how="left", maintain_order="left")["_m"]
        .fill_null(-1)
        .to_numpy()
    )
    coef = np.array([m.params["coef"] for m in models], dtype=np.float64)  # (models, 24)
    site = np.array([(float(m.params["lat"]), float(m.params["lon"])) for m in models])
    start = frame["bucket_start_ms"].to_numpy()
    width = frame["width_s"].to_numpy()
    hour = _local_hour(frame["bucket_start_ms"], tz)
    for lat, lon in np.unique(site, axis=0):  # the sites of one pilot's devices: usually one
        at = np.flatnonzero((which >= 0) & np.all(site[which] == (lat, lon), axis=1))
        if len(at):
            dark = dark_share(start[at], width[at], float(lat), float(lon))
            out[at] = coef[which[at], hour[at]] * dark * (width[at] / 3600.0)
    return frame.with_columns(baseline=pl.Series(out, dtype=pl.Float64).fill_nan(None))
