"""CV(RMSE), NMBE and savings uncertainty on a hand-computed example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from processors.baselines import fit_metrics, fractional_savings_uncertainty


def test_cvrmse_and_nmbe_by_hand() -> None:
    y = np.array([10.0, 12.0, 14.0, 16.0])
    yhat = np.array([11.0, 11.0, 15.0, 15.0])
    # residuals -1, 1, -1, 1: SSE 4, sum 0; mean(y) 13; n - p = 2
    m = fit_metrics(y, yhat, p=2, granularity="hourly")
    assert m.cvrmse == pytest.approx(100 * math.sqrt(4 / 2) / 13)  # 10.878 %
    assert m.nmbe == pytest.approx(0.0)
    assert m.r2 == pytest.approx(1 - 4 / 20)
    assert m.meets_ashrae


def test_nmbe_sign_and_thresholds() -> None:
    y = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    yhat = np.array([8.0, 8.0, 8.0, 8.0, 8.0])
    m = fit_metrics(y, yhat, p=1, granularity="monthly")
    # sum(y - yhat) = 10; (n - p) * mean = 4 * 10
    assert m.nmbe == pytest.approx(100 * 10 / 40)
    assert m.cvrmse == pytest.approx(100 * math.sqrt(20 / 4) / 10)
    assert not m.meets_ashrae  # monthly: 15 % and 5 %


def test_fractional_savings_uncertainty_formula() -> None:
    y = np.array([10.0, 12.0, 14.0, 16.0])
    m = fit_metrics(y, np.array([11.0, 11.0, 15.0, 15.0]), p=2, granularity="hourly")
    rho = min(max(m.autocorr, 0.0), 0.99)
    n_eff = 4 * (1 - rho) / (1 + rho)
    expected = (
        1.6449 * 1.26 * (m.cvrmse / 100) * math.sqrt((4 / n_eff) * (1 + 2 / n_eff) / 12) / 0.1
    )
    got = fractional_savings_uncertainty(m, m=12, savings_fraction=0.1)
    assert got == pytest.approx(expected, rel=1e-4)
    assert fractional_savings_uncertainty(m, m=12, savings_fraction=0.0) == math.inf
