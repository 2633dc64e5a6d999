"""Goodness of fit (ASHRAE Guideline 14 form, DOMAIN.md §4) and fractional savings uncertainty.

``CV(RMSE) = 100 * sqrt(sum((y - yhat)^2) / (n - p)) / mean(y)``
``NMBE = 100 * sum(y - yhat) / ((n - p) * mean(y))``

Thresholds: sub-monthly data (hourly, daily) CV(RMSE) <= 30 % and |NMBE| <= 10 %; monthly 15 % and
5 %. The guideline states thresholds for hourly and monthly data only; daily models are held to the
hourly ones here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

THRESHOLDS: dict[str, tuple[float, float]] = {  # granularity -> (max CV(RMSE) %, max |NMBE| %)
    "hourly": (30.0, 10.0),
    "daily": (30.0, 10.0),
    "monthly": (15.0, 5.0),
}


@dataclass(frozen=True, slots=True)
class FitMetrics:
    """How well a baseline reproduces its own baseline period."""

    n: int  # data points used
    p: int  # model parameters
    r2: float  # coefficient of determination
    adj_r2: float  # adjusted for the number of predictors
    cvrmse: float  # %, ASHRAE G14 form
    nmbe: float  # %, ASHRAE G14 form
    granularity: str  # hourly | daily | monthly
    meets_ashrae: bool  # both thresholds of the granularity met
    autocorr: float  # lag-1 autocorrelation of the residuals (for the savings uncertainty)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON and tables."""
        return asdict(self)


def grouped_fit_metrics(
    group: np.ndarray, y: np.ndarray, yhat: np.ndarray, p: np.ndarray, granularity: str
) -> list[FitMetrics]:
    """Fit metrics of many models at once; ``group`` (0..G-1) names each point's model.

    Points of one group must be contiguous and in time order for the autocorrelation.
    """
    n_groups = len(p)
    n = np.bincount(group, minlength=n_groups).astype(np.float64)
    resid = y - yhat
    sum_y = np.bincount(group, y, n_groups)
    mean_y = sum_y / np.maximum(n, 1)
    sse = np.bincount(group, resid**2, n_groups)
    sst = np.bincount(group, (y - mean_y[group]) ** 2, n_groups)
    dof = np.maximum(n - p, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cvrmse = 100.0 * np.sqrt(sse / dof) / mean_y
        nmbe = 100.0 * np.bincount(group, resid, n_groups) / (dof * mean_y)
        r2 = np.where(sst > 0, 1.0 - sse / sst, 0.0)
        k = np.maximum(p - 1, 0)
        adj = 1.0 - (1.0 - r2) * (n - 1) / np.maximum(n - k - 1, 1)
    same = np.r_[False, group[1:] == group[:-1]]
    lag = np.bincount(group[same], resid[same] * resid[np.flatnonzero(same) - 1], n_groups)
    rho = np.where(sse > 0, lag / np.where(sse > 0, sse, 1.0), 0.0)
    max_cv, max_nmbe = THRESHOLDS[granularity]
    return [
        FitMetrics(
            n=int(n[g]),
            p=int(p[g]),
            r2=float(r2[g]),
            adj_r2=float(adj[g]),
            cvrmse=float(cvrmse[g]),
            nmbe=float(nmbe[g]),
            granularity=granularity,
            meets_ashrae=bool(cvrmse[g] <= max_cv and abs(nmbe[g]) <= max_nmbe),
            autocorr=float(rho[g]),
        )
        for g in range(n_groups)
    ]


def fit_metrics(y: np.ndarray, yhat: np.ndarray, p: int, granularity: str) -> FitMetrics:
    """Fit metrics of one model over its baseline points (in time order)."""
    y = np.asarray(y, dtype=np.float64)
    group = np.zeros(len(y), dtype=np.int64)
    return grouped_fit_metrics(group, y, np.asarray(yhat, np.float64), np.array([p]), granularity)[
        0
    ]


def fractional_savings_uncertainty(
    metrics: FitMetrics, *, m: int, savings_fraction: float, confidence: float = 0.9
) -> float:
    """ASHRAE Guideline 14 (Annex B) fractional savings uncertainty of a reporting period.

    ``FSU = t * 1.26 * CV * sqrt((n / n') * (1 + 2 / n') / m) / F`` with CV as a fraction,
    ``n' = n * (1 - rho) / (1 + rho)`` (lag-1 autocorrelation of the residuals), ``m`` reporting
    points and ``F`` the savings fraction. ``t`` uses the normal approximation (two-sided).

    Returns:
        The uncertainty as a fraction of the savings (0.25 means +/- 25 %); inf when F is 0.
    """
    if savings_fraction == 0 or m <= 0:
        return float("inf")
    rho = min(max(metrics.autocorr, 0.0), 0.99)
    n_eff = metrics.n * (1 - rho) / (1 + rho)
    t = NormalDist().inv_cdf(0.5 + confidence / 2)
    cv = metrics.cvrmse / 100.0
    return float(
        t * 1.26 * cv * np.sqrt((metrics.n / n_eff) * (1 + 2 / n_eff) / m) / abs(savings_fraction)
    )
