"""Baselines for measurement and verification (IPMVP Option C, CalTRACK-style), pure and vectorised.

Fitting reads history through a provider passed in (:data:`HistoryProvider`); a fitted model is a
serialisable :class:`FittedModel` with a stable id; predictions run over many devices at once.
"""

from processors.baselines.daily import DailyParams, fit_daily, predict_daily
from processors.baselines.exclusions import (
    PERIOD_SCHEMA,
    baseline_period,
    drop_excluded,
    excluded_mask,
    no_periods,
)
from processors.baselines.fit import HistoryProvider, fit_devices, to_daily
from processors.baselines.hourly import HourlyParams, fit_hourly, predict_hourly
from processors.baselines.metrics import (
    THRESHOLDS,
    FitMetrics,
    fit_metrics,
    fractional_savings_uncertainty,
)
from processors.baselines.model import FittedModel
from processors.baselines.predict import predict_windows
from processors.baselines.tow import control_ratio, fit_tow, predict_tow

__all__ = [
    "PERIOD_SCHEMA",
    "THRESHOLDS",
    "DailyParams",
    "FitMetrics",
    "FittedModel",
    "HistoryProvider",
    "HourlyParams",
    "baseline_period",
    "control_ratio",
    "drop_excluded",
    "excluded_mask",
    "fit_daily",
    "fit_devices",
    "fit_hourly",
    "fit_metrics",
    "fit_tow",
    "fractional_savings_uncertainty",
    "no_periods",
    "predict_daily",
    "predict_hourly",
    "predict_tow",
    "predict_windows",
    "to_daily",
]
