"""CalTRACK-style daily model: ``usage = mu + bH * HDD(hbp) + bC * CDD(cbp)``, in Celsius.

Balance points are searched on the CalTRACK grid (30-90 F in 3 F steps, here in Celsius);
candidates are intercept-only, HDD-only, CDD-only and HDD+CDD (no CDD for gas); a degree-day
coefficient must be positive and significant (p < 0.1, normal approximation to the t statistic,
Bonferroni-corrected for the number of balance points searched, so that searching the grid does
not turn noise into a degree-day term) and its balance point must leave at least ``min_dd_days`` days with non-zero degree days; the
candidate with the highest adjusted R2 wins. Every candidate of one form is fitted at once in
closed form (centred normal equations), so the grid search is a few array operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl

from processors.baselines.metrics import fit_metrics
from processors.baselines.model import FittedModel

BALANCE_POINTS_C: tuple[float, ...] = tuple(round((f - 32) * 5 / 9, 3) for f in range(30, 91, 3))
DAY_MS = 86_400_000


@dataclass(frozen=True, kw_only=True)
class DailyParams:
    """Rules of the daily model (CalTRACK 2.0 defaults)."""

    fuel: str = "electricity"  # electricity | gas (gas: no CDD; electricity: zero usage = missing)
    min_days: int = 365  # baseline period length
    max_missing_days: int = 37  # days without usable data allowed in the period
    min_dd_days: int = 10  # days with non-zero degree days a balance point needs
    significance: float = 0.1  # two-sided p-value a degree-day coefficient must beat
    balance_points_c: tuple[float, ...] = BALANCE_POINTS_C


def fit_daily(
    days: pl.DataFrame,
    *,
    device_id: str,
    metric: str,
    period: tuple[int, int],
    excluded: tuple[tuple[int, int], ...] = (),
    params: DailyParams | None = None,
) -> FittedModel:
    """Fit one device's daily model.

    Args:
        days: one row per local day: ``day_ms`` (UTC ms of local midnight), ``usage`` (per day,
            canonical unit) and ``temperature`` (daily mean, Celsius); excluded days removed.
        device_id: device the model belongs to.
        metric: metric of ``usage``.
        period: baseline period, UTC ms, half-open.
        excluded: periods cut from fitting, recorded in the model.
        params: model rules.
    """
    p = params or DailyParams()
    y_all = days["usage"].to_numpy().astype(np.float64)
    t_all = days["temperature"].to_numpy().astype(np.float64)
    ok = np.isfinite(y_all) & np.isfinite(t_all)
    if p.fuel == "electricity":
        ok &= y_all != 0
    y, temp = y_all[ok], t_all[ok]
    period_days = round((period[1] - period[0]) / DAY_MS)
    reasons = []
    if period_days < p.min_days:
        reasons.append("baseline_too_short")
    if period_days - int(ok.sum()) > p.max_missing_days:
        reasons.append("too_many_missing_days")
    if len(y) < 3:
        reasons.append("no_data")
        return FittedModel(
            method="daily",
            device_id=device_id,
            metric=metric,
            period_start_ms=period[0],
            period_end_ms=period[1],
            params={},
            metrics=None,
            sufficient=False,
            reasons=tuple(reasons),
            excluded=excluded,
        )
    best = select_candidate(y, temp, p)
    yhat = predict_values(best, temp)
    return FittedModel(
        method="daily",
        device_id=device_id,
        metric=metric,
        period_start_ms=period[0],
        period_end_ms=period[1],
        params=best,
        metrics=fit_metrics(y, yhat, int(best["p"]), "daily"),
        sufficient=not reasons,
        reasons=tuple(reasons),
        excluded=excluded,
    )


def predict_values(params: dict[str, Any], temperature: np.ndarray) -> np.ndarray:
    """Daily usage predicted by one model's parameters."""
    t = np.asarray(temperature, dtype=np.float64)
    out = np.full(t.shape, float(params["mu"]))
    if params["beta_h"]:
        out += params["beta_h"] * np.maximum(params["hbp"] - t, 0.0)
    if params["beta_c"]:
        out += params["beta_c"] * np.maximum(t - params["cbp"], 0.0)
    return out


def predict_daily(models: list[FittedModel], days: pl.DataFrame) -> pl.DataFrame:
    """Predictions of many devices' daily models at once.

    Args:
        models: daily models, one per device.
        days: ``device_id``, ``day_ms``, ``temperature`` rows.

    Returns:
        ``days`` with ``baseline`` (null where the device has no model) and ``baseline_model_id``.
    """
    table = pl.DataFrame(
        {
            "device_id": [m.device_id for m in models],
            "baseline_model_id": [m.model_id for m in models],
            **{
                k: [float(m.params.get(k) or 0.0) for m in models]
                for k in ("mu", "beta_h", "hbp", "beta_c", "cbp")
            },
        },
        schema_overrides={"device_id": pl.String, "baseline_model_id": pl.String},
    )
    t = pl.col("temperature")
    return (
        days.join(table, on="device_id", how="left", maintain_order="left")
        .with_columns(
            baseline=pl.col("mu")
            + pl.col("beta_h") * (pl.col("hbp") - t).clip(lower_bound=0.0)
            + pl.col("beta_c") * (t - pl.col("cbp")).clip(lower_bound=0.0)
        )
        .drop("mu", "beta_h", "hbp", "beta_c", "cbp")
    )


def select_candidate(y: np.ndarray, temp: np.ndarray, p: DailyParams) -> dict[str, Any]:
    """Fit every candidate form and balance point; return the best qualifying one's parameters."""
    n = len(y)
    bps = np.asarray(p.balance_points_c)
    z1 = NormalDist().inv_cdf(1 - p.significance / 2 / len(bps))
    z2 = NormalDist().inv_cdf(1 - p.significance / 2 / (len(bps) * (len(bps) + 1) / 2))
    yc = y - y.mean()
    syy = float(yc @ yc)
    hdd = np.maximum(bps[None, :] - temp[:, None], 0.0)  # n x B
    cdd = np.maximum(temp[:, None] - bps[None, :], 0.0)
    cands: list[dict[str, Any]] = [
        {
            "form": "intercept",
            "mu": float(y.mean()),
            "beta_h": 0.0,
            "hbp": None,
            "beta_c": 0.0,
            "cbp": None,
            "p": 1,
            "adj_r2": 0.0,
        }
    ]
    forms = [("hdd", hdd)] + ([("cdd", cdd)] if p.fuel != "gas" else [])
    for form, x in forms:
        enough = (x > 0).sum(axis=0) >= p.min_dd_days
        xm = x.mean(axis=0)
        xc = x - xm
        sxx = (xc * xc).sum(axis=0)
        sxy = xc.T @ yc
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = sxy / sxx
            sse = syy - beta * sxy
            se = np.sqrt(sse / (n - 2) / sxx)
            good = enough & (sxx > 0) & (beta > 0) & (beta / se > z1)
            adj = 1 - (sse / syy) * (n - 1) / (n - 2)
        if good.any():
            i = int(np.argmax(np.where(good, adj, -np.inf)))
            cands.append(
                {
                    "form": form,
                    "mu": float(y.mean() - beta[i] * xm[i]),
                    "beta_h": float(beta[i]) if form == "hdd" else 0.0,
                    "hbp": float(bps[i]) if form == "hdd" else None,
                    "beta_c": float(beta[i]) if form == "cdd" else 0.0,
                    "cbp": float(bps[i]) if form == "cdd" else None,
                    "p": 2,
                    "adj_r2": float(adj[i]),
                }
            )
    if p.fuel != "gas":
        cands += _both(y, yc, syy, hdd, cdd, bps, p.min_dd_days, z2)
    best = max(cands, key=lambda c: c["adj_r2"])
    return best


def _both(
    y: np.ndarray,
    yc: np.ndarray,
    syy: float,
    hdd: np.ndarray,
    cdd: np.ndarray,
    bps: np.ndarray,
    min_dd_days: int,
    z: float,
) -> list[dict[str, Any]]:
    """HDD+CDD for every (heating bp <= cooling bp) pair, solved with 2x2 normal equations."""
    n = len(y)
    hc = hdd - hdd.mean(axis=0)
    cc = cdd - cdd.mean(axis=0)
    shh = (hc * hc).sum(axis=0)[:, None]
    scc = (cc * cc).sum(axis=0)[None, :]
    shc = hc.T @ cc
    shy = (hc.T @ yc)[:, None]
    scy = (cc.T @ yc)[None, :]
    det = shh * scc - shc**2
    with np.errstate(divide="ignore", invalid="ignore"):
        bh = (scc * shy - shc * scy) / det
        bc = (shh * scy - shc * shy) / det
        sse = syy - bh * shy - bc * scy
        s2 = sse / (n - 3)
        th = bh / np.sqrt(s2 * scc / det)
        tc = bc / np.sqrt(s2 * shh / det)
        adj = 1 - (sse / syy) * (n - 1) / (n - 3)
    enough_h = ((hdd > 0).sum(axis=0) >= min_dd_days)[:, None]
    enough_c = ((cdd > 0).sum(axis=0) >= min_dd_days)[None, :]
    good = (
        (bps[:, None] <= bps[None, :])
        & enough_h
        & enough_c
        & (det > 0)
        & (bh > 0)
        & (bc > 0)
        & (th > z)
        & (tc > z)
    )
    if not good.any():
        return []
    i, j = np.unravel_index(int(np.argmax(np.where(good, adj, -np.inf))), good.shape)
    mu = y.mean() - bh[i, j] * hdd[:, i].mean() - bc[i, j] * cdd[:, j].mean()
    return [
        {
            "form": "hdd_cdd",
            "mu": float(mu),
            "beta_h": float(bh[i, j]),
            "hbp": float(bps[i]),
            "beta_c": float(bc[i, j]),
            "cbp": float(bps[j]),
            "p": 3,
            "adj_r2": float(adj[i, j]),
        }
    ]
