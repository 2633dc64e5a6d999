"""CalTRACK-style hourly model: time of week and temperature (TOWT), fitted for many devices at once.

Per device and calendar month ``m``: ``usage = alpha[tow] + sum_k beta[occ(tow), k] * seg_k(T)``
with 168 hour-of-week terms (no intercept), occupancy per hour of week from the signs of the
residuals of a simple degree-day model (share of positive residuals > 65 % = occupied), and
piecewise temperature segments with bin edges 30/45/55/65/75/90 F, separately for occupied and
unoccupied hours. Month ``m``'s model weights its own month's data 1 and the neighbouring months
0.5 (circular, December neighbours January).

The fit is exact weighted least squares, solved without ever building the 182-column design:
per (device, month, hour of week) sums come from ``np.bincount``; the 168 hour-of-week terms are
eliminated with a Schur complement, leaving a 7 x 7 system per occupancy group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from processors.baselines.metrics import grouped_fit_metrics
from processors.baselines.model import FittedModel, stacked

EDGES_C: tuple[float, ...] = tuple(round((f - 32) * 5 / 9, 3) for f in (30, 45, 55, 65, 75, 90))
N_SEG = len(EDGES_C) + 1
MIN_BIN_HOURS = 20  # bins beyond the data extrapolate the warmest bin with this many hours
N_TOW = 168
HOUR_MS = 3_600_000
_PAIRS = [(k, m) for k in range(N_SEG) for m in range(k, N_SEG)]


@dataclass(frozen=True, kw_only=True)
class HourlyParams:
    """Rules of the hourly model (CalTRACK 2.0 defaults)."""

    occupied_share: float = 0.65  # share of positive residuals above which an hour is occupied
    neighbour_weight: float = 0.5  # weight of the neighbouring months' data
    hdd_bp_c: float = 10.0  # 50 F, balance point of the occupancy pre-model
    cdd_bp_c: float = 18.333  # 65 F
    min_days: int = 365  # baseline period length
    min_month_coverage: float = 0.9  # share of a month's hours that must be present
    chunk_devices: int = 64  # devices fitted per block (bounds memory)


def local_calendar(ts_ms: pl.Expr | str, tz: str) -> list[pl.Expr]:
    """``month`` (0-11) and ``tow`` (0-167, Monday 00:00 = 0) of UTC ms timestamps in ``tz``."""
    col = pl.col(ts_ms) if isinstance(ts_ms, str) else ts_ms
    local = pl.from_epoch(col, "ms").dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    return [
        (local.dt.month().cast(pl.Int64) - 1).alias("month"),
        ((local.dt.weekday().cast(pl.Int64) - 1) * 24 + local.dt.hour().cast(pl.Int64)).alias(
            "tow"
        ),
    ]


def calendar_of(ts_ms: pl.Series, tz: str) -> pl.DataFrame:
    """``ts_ms, month, tow`` for the distinct timestamps of a column (a few per window batch)."""
    return pl.DataFrame({"ts_ms": ts_ms.unique()}).with_columns(local_calendar("ts_ms", tz))


def segments(temperature: np.ndarray) -> np.ndarray:
    """Piecewise temperature components (n x 7) that sum to the temperature."""
    t = np.asarray(temperature, dtype=np.float64)
    e = np.asarray(EDGES_C)
    out = np.empty((len(t), N_SEG))
    out[:, 0] = np.minimum(t, e[0])
    for k in range(1, N_SEG - 1):
        out[:, k] = np.clip(t - e[k - 1], 0.0, e[k] - e[k - 1])
    out[:, -1] = np.maximum(t - e[-1], 0.0)
    return out


def fit_hourly(
    frame: pl.DataFrame,
    *,
    tz: str,
    metric: str,
    period: tuple[int, int],
    excluded: tuple[tuple[int, int], ...] = (),
    params: HourlyParams | None = None,
) -> list[FittedModel]:
    """Fit the hourly model of every device in ``frame``.

    Args:
        frame: ``device_id``, ``ts_ms`` (hour start, UTC ms), ``usage`` (per hour) and
            ``temperature`` (Celsius); excluded hours already removed.
        tz: IANA time zone of the site (hours of week are local).
        metric: metric of ``usage``.
        period: baseline period, UTC ms, half-open.
        excluded: periods cut from fitting, recorded in the models.
        params: model rules.
    """
    p = params or HourlyParams()
    rows = (
        frame.filter(pl.col("usage").is_finite() & pl.col("temperature").is_finite())
        .with_columns(local_calendar("ts_ms", tz))
        .sort("device_id", "ts_ms")
    )
    devices = rows["device_id"].unique(maintain_order=True).to_list()
    dev = rows["device_id"].rank("dense").cast(pl.Int64).to_numpy() - 1
    y = rows["usage"].to_numpy().astype(np.float64)
    temp = rows["temperature"].to_numpy().astype(np.float64)
    month = rows["month"].to_numpy()
    tow = rows["tow"].to_numpy()
    reasons = _sufficiency(rows, devices, period, tz, p)

    alpha = np.zeros((len(devices), 12, N_TOW))
    beta = np.zeros((len(devices), 12, 2, N_SEG))
    occ = np.zeros((len(devices), 12, N_TOW), dtype=bool)
    starts = np.searchsorted(dev, np.arange(0, len(devices) + 1))
    for c0 in range(0, len(devices), p.chunk_devices):
        c1 = min(c0 + p.chunk_devices, len(devices))
        sl = slice(starts[c0], starts[c1])
        a, b, o = _fit_block(dev[sl] - c0, c1 - c0, y[sl], temp[sl], month[sl], tow[sl], p)
        alpha[c0:c1], beta[c0:c1], occ[c0:c1] = a, b, o

    beta = _share_sparse_bins(beta, dev, month, temp, len(devices))
    yhat = _predict_arrays(alpha, beta, occ, dev, month, tow, segments(temp))
    metrics = grouped_fit_metrics(dev, y, yhat, np.full(len(devices), N_TOW + 2 * N_SEG), "hourly")
    return [
        FittedModel(
            method="hourly",
            device_id=d,
            metric=metric,
            period_start_ms=period[0],
            period_end_ms=period[1],
            params={
                "edges_c": list(EDGES_C),
                "alpha": np.round(alpha[i], 9).tolist(),
                "beta": np.round(beta[i], 9).tolist(),
                "occupied": occ[i].astype(int).tolist(),
            },
            metrics=metrics[i],
            sufficient=not reasons[d],
            reasons=tuple(reasons[d]),
            excluded=excluded,
        )
        for i, d in enumerate(devices)
    ]


def predict_hourly(models: list[FittedModel], frame: pl.DataFrame, *, tz: str) -> pl.DataFrame:
    """Predictions of many devices' hourly models at once.

    Args:
        models: hourly models, one per device.
        frame: ``device_id``, ``ts_ms`` (hour start, UTC ms), ``temperature``.
        tz: IANA time zone of the site.

    Returns:
        ``frame`` with ``baseline`` (null where the device has no model) and ``baseline_model_id``.
    """
    index = pl.DataFrame(
        {
            "device_id": [m.device_id for m in models],
            "_m": np.arange(len(models), dtype=np.int64),
            "baseline_model_id": [m.model_id for m in models],
        },
        schema_overrides={"device_id": pl.String, "baseline_model_id": pl.String},
    )
    rows = frame.join(index, on="device_id", how="left", maintain_order="left")
    rows = rows.join(calendar_of(rows["ts_ms"], tz), on="ts_ms", how="left", maintain_order="left")
    alpha, beta, occ = _stack(models)
    known = rows["_m"].is_not_null().to_numpy()
    mi = rows["_m"].fill_null(0).to_numpy()
    temp = rows["temperature"].fill_null(np.nan).to_numpy().astype(np.float64)
    pred = _predict_arrays(
        alpha,
        beta,
        occ,
        mi,
        rows["month"].to_numpy(),
        rows["tow"].to_numpy(),
        segments(np.nan_to_num(temp)),
    )
    pred = np.where(known & np.isfinite(temp), pred, np.nan)
    return rows.drop("_m", "month", "tow").with_columns(
        baseline=pl.Series(pred, dtype=pl.Float64).fill_nan(None)
    )


def _stack(models: list[FittedModel]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _, alpha = stacked(models, "alpha", (12, N_TOW))
    _, beta = stacked(models, "beta", (12, 2, N_SEG))
    _, occ = stacked(models, "occupied", (12, N_TOW))
    return alpha, beta, occ.astype(bool)


def _predict_arrays(
    alpha: np.ndarray,
    beta: np.ndarray,
    occ: np.ndarray,
    dev: np.ndarray,
    month: np.ndarray,
    tow: np.ndarray,
    seg: np.ndarray,
) -> np.ndarray:
    group = occ[dev, month, tow].astype(np.int64)
    out: np.ndarray = alpha[dev, month, tow] + np.einsum("ij,ij->i", beta[dev, month, group], seg)
    return out


def _share_sparse_bins(
    beta: np.ndarray, dev: np.ndarray, month: np.ndarray, temp: np.ndarray, n_dev: int
) -> np.ndarray:
    """Bins above a month model's warmest bin with ``MIN_BIN_HOURS`` hours take that bin's slope
    (CalTRACK combines a bin short of hours with its neighbour).

    Without this an empty bin's slope is 0 and a sparse one's is fitted on a handful of hours
    (a temperature spike): a model fitted on a cold month predicts flat (or wild) above its warmest
    edge and over-predicts a warmer reporting period. Colder sparse bins are left as fitted: their
    component is a constant for the warmer hours, absorbed by the hour-of-week terms.
    """
    k = np.searchsorted(np.asarray(EDGES_C), temp, side="right")  # bin of each hour, 0..N_SEG-1
    by_month = np.bincount((dev * 12 + month) * N_SEG + k, minlength=n_dev * 12 * N_SEG).reshape(
        n_dev, 12, N_SEG
    )
    hours = _month_weighted(by_month.astype(np.float64), 1.0)  # months a month model draws on
    bins = np.arange(N_SEG)
    enough = hours >= MIN_BIN_HOURS
    warmest = np.where(enough.any(axis=-1), N_SEG - 1 - np.argmax(enough[..., ::-1], axis=-1), -1)
    # bins above it (no hours, or a few: meter spikes) borrow its slope; their components are 0
    # for every hour at or below it, so those hours' predictions do not change
    above = (bins > warmest[..., None]) & (warmest[..., None] >= 0)
    source = np.where(above, warmest[..., None], bins)
    out: np.ndarray = np.take_along_axis(beta, source[:, :, None, :].repeat(2, axis=2), axis=-1)
    return out


def _month_weighted(x: np.ndarray, w: float) -> np.ndarray:
    """Sums by data month (axis 1) -> sums of each month's model: own 1, neighbours ``w``."""
    out: np.ndarray = x + w * (np.roll(x, 1, axis=1) + np.roll(x, -1, axis=1))
    return out


def _fit_block(
    dev: np.ndarray,
    n_dev: int,
    y: np.ndarray,
    temp: np.ndarray,
    month: np.ndarray,
    tow: np.ndarray,
    p: HourlyParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    occ = _occupancy(dev, n_dev, y, temp, month, tow, p)
    seg = segments(temp)
    shape = (n_dev, 12, N_TOW)
    idx = (dev * 12 + month) * N_TOW + tow
    size = n_dev * 12 * N_TOW

    def binned(weights: np.ndarray | None) -> np.ndarray:
        out = np.bincount(idx, weights, size).reshape(shape)
        return _month_weighted(out, p.neighbour_weight)

    n0 = binned(None)
    sy = binned(y)
    s_s = np.stack([binned(seg[:, k]) for k in range(N_SEG)], axis=-1)  # D,12,168,K
    s_sy = np.stack([binned(seg[:, k] * y) for k in range(N_SEG)], axis=-1)
    s_ss = np.zeros((*shape, N_SEG, N_SEG))
    for k, m in _PAIRS:
        s_ss[..., k, m] = binned(seg[:, k] * seg[:, m])
        s_ss[..., m, k] = s_ss[..., k, m]

    inv_n = np.divide(1.0, n0, out=np.zeros_like(n0), where=n0 > 0)
    groups = np.stack([~occ, occ], axis=2).astype(np.float64)  # D,12,2,168
    # Schur complement per (device, month, group): C - B' diag(1/n) B, e - B' (sy / n)
    c = np.einsum("dmgt,dmtkl->dmgkl", groups, s_ss)
    c -= np.einsum("dmgt,dmtk,dmtl->dmgkl", groups, s_s * inv_n[..., None], s_s)
    e = np.einsum("dmgt,dmtk->dmgk", groups, s_sy)
    e -= np.einsum("dmgt,dmtk->dmgk", groups, s_s * (sy * inv_n)[..., None])
    diag = np.einsum("...kk->...k", c)
    ridge = 1e-9 * (diag.mean(axis=-1, keepdims=True) + 1e-12)
    c[..., np.arange(N_SEG), np.arange(N_SEG)] += np.maximum(ridge, 1e-6 * diag)
    beta = np.linalg.solve(c, e[..., None])[..., 0]  # D,12,2,K
    beta_t = np.take_along_axis(beta, occ.astype(np.int64)[..., None], axis=2)  # D,12,168,K
    alpha = (sy - np.einsum("dmtk,dmtk->dmt", s_s, beta_t)) * inv_n
    return alpha, beta, occ


def _occupancy(
    dev: np.ndarray,
    n_dev: int,
    y: np.ndarray,
    temp: np.ndarray,
    month: np.ndarray,
    tow: np.ndarray,
    p: HourlyParams,
) -> np.ndarray:
    """Occupied hours of week per (device, month) from the signs of a degree-day model's residuals."""
    x = np.stack(
        [
            np.ones_like(temp),
            np.maximum(p.hdd_bp_c - temp, 0.0),
            np.maximum(temp - p.cdd_bp_c, 0.0),
        ],
        axis=1,
    )
    idx = dev * 12 + month
    size = n_dev * 12
    xtx = np.zeros((n_dev, 12, 3, 3))
    xty = np.zeros((n_dev, 12, 3))
    for i in range(3):
        xty[..., i] = _month_weighted(
            np.bincount(idx, x[:, i] * y, size).reshape(n_dev, 12), p.neighbour_weight
        )
        for j in range(3):
            xtx[..., i, j] = _month_weighted(
                np.bincount(idx, x[:, i] * x[:, j], size).reshape(n_dev, 12), p.neighbour_weight
            )
    xtx[..., np.arange(3), np.arange(3)] += 1e-6
    coef = np.linalg.solve(xtx, xty[..., None])[..., 0]  # D,12,3
    pos = np.zeros(n_dev * 12 * N_TOW)
    tot = np.zeros(n_dev * 12 * N_TOW)
    for shift, w in ((0, 1.0), (1, p.neighbour_weight), (-1, p.neighbour_weight)):
        m = (month + shift) % 12
        resid = y - np.einsum("ij,ij->i", coef[dev, m], x)
        cell = (dev * 12 + m) * N_TOW + tow
        pos += np.bincount(cell, w * (resid > 0), len(pos))
        tot += np.bincount(cell, np.full(len(y), w), len(tot))
    share = np.divide(pos, tot, out=np.zeros_like(pos), where=tot > 0)
    return (share > p.occupied_share).reshape(n_dev, 12, N_TOW)


def _sufficiency(
    rows: pl.DataFrame, devices: list[str], period: tuple[int, int], tz: str, p: HourlyParams
) -> dict[str, list[str]]:
    """Reason codes per device: baseline_too_short, month_coverage_low."""
    reasons: dict[str, list[str]] = {d: [] for d in devices}
    if (period[1] - period[0]) / (24 * HOUR_MS) < p.min_days:
        for d in devices:
            reasons[d].append("baseline_too_short")
    hours = (
        pl.DataFrame({"ts_ms": np.arange(period[0], period[1], HOUR_MS, dtype=np.int64)})
        .with_columns(local_calendar("ts_ms", tz))
        .group_by("month")
        .agg(expected=pl.len())
    )
    cov: Any = (
        rows.group_by("device_id", "month")
        .agg(n=pl.len())
        .join(hours, on="month", how="right")
        .group_by("device_id")
        .agg(worst=(pl.col("n").fill_null(0) / pl.col("expected")).min(), months=pl.len())
    )
    for d, worst, months in cov.iter_rows():
        if d is not None and (worst < p.min_month_coverage or months < hours.height):
            reasons[d].append("month_coverage_low")
    return reasons
