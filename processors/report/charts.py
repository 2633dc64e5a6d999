"""Report charts as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt  # after mpl.use: the backend must be chosen first
from matplotlib.figure import Figure

from processors.report.data import Report

CHARTS = {
    "baseline_vs_actual": "Baseline vs actual energy per day",
    "cumulative_avoided": "Cumulative avoided emissions",
}


def render_charts(report: Report) -> dict[str, bytes]:
    """Every chart of the report, name -> PNG bytes."""
    return {
        "baseline_vs_actual": _baseline_vs_actual(report),
        "cumulative_avoided": _cumulative(report),
    }


def _baseline_vs_actual(report: Report) -> bytes:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    days = report.daily["day"].to_list()
    ax.plot(days, report.daily["baseline"].to_list(), label="adjusted baseline", lw=1.5)
    ax.plot(days, report.daily["actual"].to_list(), label="actual", lw=1.5)
    ax.set_ylabel("kWh per day")
    ax.set_title(CHARTS["baseline_vs_actual"])
    ax.legend()
    fig.autofmt_xdate()
    return _png(fig)


def _cumulative(report: Report) -> bytes:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(report.daily["day"].to_list(), report.daily["cumulative_t_co2e"].to_list(), lw=2)
    ax.set_ylabel("tCO2e")
    ax.set_title(CHARTS["cumulative_avoided"])
    fig.autofmt_xdate()
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
