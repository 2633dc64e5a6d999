"""What a measurement-and-verification report says, computed from frames (no I/O, no rendering).

Inputs are the pilot's hourly window results for the reporting period, its fitted baselines, the
factor rows used and the excluded periods; the output is a :class:`Report` value that the
renderers turn into Markdown, HTML or PDF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from pilotstream.vocab import METRICS
from processors.baselines.metrics import fractional_savings_uncertainty
from processors.baselines.model import FittedModel

SECTIONS = (
    "Method",
    "Periods",
    "Data coverage",
    "Baseline fit",
    "Savings",
    "Emission factors",
    "Excluded periods",
    "Charts",
)
WINDOW_COLUMNS = (
    "bucket_start_ms",
    "width_s",
    "device_id",
    "metric",
    "actual",
    "baseline",
    "delta",
    "factor",
    "avoided_co2e_kg",
    "coverage",
    "baseline_model_id",
    "factor_id",
)


@dataclass(frozen=True, kw_only=True)
class ReportInput:
    """Everything a report is made of."""

    title: str  # e.g. "paris-energy-1" or "City of Paris"
    tenants: tuple[str, ...]  # pilots covered
    tz: str  # city time zone (days are local)
    start_ms: int  # reporting period start, UTC ms
    end_ms: int  # reporting period end, UTC ms (exclusive)
    windows: pl.DataFrame  # hourly window results, columns WINDOW_COLUMNS
    models: tuple[FittedModel, ...]  # baselines in use
    factors: pl.DataFrame  # factor rows used (factor_id, scope, unit, value, basis, source, year)
    excluded: pl.DataFrame  # excluded periods: device_id, start_ms, end_ms, kind
    method: str  # one paragraph: IPMVP option, models, factor policy


@dataclass(frozen=True, kw_only=True)
class Report:
    """A computed report, ready to render."""

    input: ReportInput
    savings: pl.DataFrame  # per metric: unit, actual, baseline, avoided, avoided_co2e_kg
    total_t_co2e: float  # avoided tCO2e over the period
    fsu: float  # fractional savings uncertainty of the energy savings (90 %), nan if none
    coverage: pl.DataFrame  # per device and metric: windows, mean coverage, masked share
    fit: pl.DataFrame  # per model: device, method, n, p, R2, CV(RMSE), NMBE, thresholds, reasons
    daily: pl.DataFrame  # per local day: actual, baseline, avoided_co2e_kg, cumulative tCO2e
    excluded: pl.DataFrame  # excluded periods overlapping the report, readable times


def build_report(inp: ReportInput) -> Report:
    """Compute every figure of the report."""
    w = inp.windows.filter(
        (pl.col("bucket_start_ms") >= inp.start_ms) & (pl.col("bucket_start_ms") < inp.end_ms)
    )
    units = {m: spec.unit for m, spec in METRICS.items()}
    savings = (
        w.group_by("metric")
        .agg(
            actual=pl.col("actual").sum(),
            baseline=pl.col("baseline").sum(),
            avoided=pl.col("delta").sum(),
            avoided_co2e_kg=pl.col("avoided_co2e_kg").sum(),
        )
        .with_columns(unit=pl.col("metric").replace_strict(units, default=""))
        .sort("metric")
    )
    coverage = (
        w.group_by("device_id", "metric")
        .agg(
            windows=pl.len(),
            mean_coverage=pl.col("coverage").mean(),
            masked_share=((pl.col("delta") == 0) & (pl.col("actual") != pl.col("baseline"))).mean(),
        )
        .sort("device_id", "metric")
    )
    local_day = (
        pl.from_epoch("bucket_start_ms", "ms")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(inp.tz)
        .dt.date()
    )
    daily = (
        w.with_columns(day=local_day)
        .group_by("day")
        .agg(
            actual=pl.col("actual").filter(pl.col("metric").str.starts_with("energy")).sum(),
            baseline=pl.col("baseline").filter(pl.col("metric").str.starts_with("energy")).sum(),
            avoided_co2e_kg=pl.col("avoided_co2e_kg").sum(),
        )
        .sort("day")
        .with_columns(cumulative_t_co2e=pl.col("avoided_co2e_kg").cum_sum() / 1000)
    )
    return Report(
        input=inp,
        savings=savings,
        total_t_co2e=float(w["avoided_co2e_kg"].sum()) / 1000,
        fsu=_fsu(w, inp.models),
        coverage=coverage,
        fit=_fit_table(inp.models),
        daily=daily,
        excluded=_excluded(inp),
    )


def _fit_table(models: tuple[FittedModel, ...]) -> pl.DataFrame:
    rows = []
    for m in models:
        f = m.metrics
        rows.append(
            {
                "device_id": m.device_id,
                "metric": m.metric,
                "method": m.method,
                "model_id": m.model_id,
                "baseline_from": _day(m.period_start_ms),
                "baseline_to": _day(m.period_end_ms),
                "n": f.n if f else 0,
                "p": f.p if f else 0,
                "r2": f.r2 if f else math.nan,
                "cvrmse_pct": f.cvrmse if f else math.nan,
                "nmbe_pct": f.nmbe if f else math.nan,
                "ashrae_met": bool(f and f.meets_ashrae),
                "sufficient": m.sufficient,
                "reasons": ", ".join(m.reasons),
            }
        )
    schema = {
        "device_id": pl.String,
        "metric": pl.String,
        "method": pl.String,
        "model_id": pl.String,
        "baseline_from": pl.String,
        "baseline_to": pl.String,
        "n": pl.Int64,
        "p": pl.Int64,
        "r2": pl.Float64,
        "cvrmse_pct": pl.Float64,
        "nmbe_pct": pl.Float64,
        "ashrae_met": pl.Boolean,
        "sufficient": pl.Boolean,
        "reasons": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def _fsu(w: pl.DataFrame, models: tuple[FittedModel, ...]) -> float:
    """Savings uncertainty of all models combined: absolute uncertainties add in quadrature."""
    per_model = w.group_by("baseline_model_id").agg(
        saved=pl.col("delta").sum(), baseline=pl.col("baseline").sum(), m=pl.len()
    )
    by_id = {m.model_id: m for m in models}
    total_saved, var = 0.0, 0.0
    for model_id, saved, baseline, m in per_model.iter_rows():
        model = by_id.get(model_id)
        if model is None or model.metrics is None or not baseline or not saved:
            continue
        fsu = fractional_savings_uncertainty(model.metrics, m=m, savings_fraction=saved / baseline)
        total_saved += saved
        var += (fsu * saved) ** 2
    return math.sqrt(var) / abs(total_saved) if total_saved else math.nan


def _excluded(inp: ReportInput) -> pl.DataFrame:
    rows = inp.excluded.filter(
        (pl.col("end_ms") > inp.start_ms) & (pl.col("start_ms") < inp.end_ms)
    )
    return rows.select(
        pl.col("device_id").fill_null("(whole pilot)"),
        "kind",
        pl.col("start_ms").map_elements(_day, return_dtype=pl.String).alias("from"),
        pl.col("end_ms").map_elements(_day, return_dtype=pl.String).alias("to"),
    )


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


_METHOD_NAMES = {
    "daily": "CalTRACK-style daily model (HDD/CDD with balance points searched in Celsius)",
    "hourly": "CalTRACK-style hourly model (time of week and temperature, occupancy, "
    "month-by-month weights)",
    "tow": "time-of-week baseline (mean per hour of week over the baseline period)",
}


def method_text(lots: Sequence[str], models: Sequence[FittedModel]) -> str:
    """The report's method paragraph, from the pilots' lots and the models in use."""
    used = sorted({m.method for m in models})
    models_txt = (
        "; ".join(
            f"{_METHOD_NAMES[m]} for {sum(x.method == m for x in models)} device(s)" for m in used
        )
        or "no baseline models stored"
    )
    parts = []
    if "energy" in lots:
        parts.append(
            "Energy: IPMVP Option C (whole facility). Avoided energy = adjusted baseline (the "
            "model driven by reporting-period temperatures) minus measured use."
        )
    if "mobility" in lots:
        parts.append(
            "Mobility: avoided vehicle trips against time-of-week counts of the baseline period, "
            "and mode shift: distance x (sum of replaced-mode shares x their factors - the new "
            "mode's factor), shares being the pilot's survey-based parameters."
        )
    parts.append(f"Baselines: {models_txt}.")
    parts.append(
        "Emissions: avoided amount x the factor valid at each hour (a time-varying series where "
        "one covers the time, the annual factor otherwise). Windows with gaps, faults, low "
        "coverage or inside excluded periods count no avoided emissions."
    )
    return " ".join(parts)


def assemble_input(
    *,
    title: str,
    tenants: Sequence[str],
    lots: Sequence[str],
    tz: str,
    start_ms: int,
    end_ms: int,
    windows: pl.DataFrame,
    models: Sequence[FittedModel],
    factors: pl.DataFrame,
    excluded: pl.DataFrame,
) -> ReportInput:
    """A :class:`ReportInput` from frames read elsewhere (database or tests)."""
    used = set(windows["baseline_model_id"].unique().to_list())
    return ReportInput(
        title=title,
        tenants=tuple(tenants),
        tz=tz,
        start_ms=start_ms,
        end_ms=end_ms,
        windows=windows,
        models=tuple(m for m in models if m.model_id in used or not used),
        factors=factors,
        excluded=excluded,
        method=method_text(lots, models),
    )
