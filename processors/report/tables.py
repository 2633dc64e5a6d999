"""Terminal tables (rich) for the M&V commands."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from rich.table import Table

from processors.baselines.model import FittedModel


def fit_table(models: Sequence[FittedModel], *, title: str) -> Table:
    """Fit metrics per model, thresholds met and sufficiency reasons."""
    t = Table(title=title)
    for col in (
        "device",
        "metric",
        "method",
        "n",
        "p",
        "R2",
        "CV(RMSE) %",
        "NMBE %",
        "ASHRAE",
        "sufficient",
    ):
        t.add_column(col, justify="right" if col in ("n", "p") else "left")
    for m in models:
        f = m.metrics
        t.add_row(
            m.device_id,
            m.metric,
            m.method,
            str(f.n) if f else "-",
            str(f.p) if f else "-",
            f"{f.r2:.3f}" if f else "-",
            f"{f.cvrmse:.1f}" if f else "-",
            f"{f.nmbe:.2f}" if f else "-",
            "met" if f and f.meets_ashrae else "NOT met",
            "yes" if m.sufficient else "no: " + ", ".join(m.reasons),
        )
    return t


def factor_table(frame: pl.DataFrame, *, scope_prefix: str = "") -> Table:
    """Factors with value, unit, basis, source, year and validity."""
    t = Table(title="Emission factors")
    cols = (
        "factor_id",
        "scope",
        "value",
        "unit",
        "basis",
        "source",
        "year",
        "valid_from",
        "valid_to",
    )
    for col in cols:
        t.add_column(col)
    rows = frame.filter(pl.col("scope").str.starts_with(scope_prefix)).sort(
        "scope", "valid_from_ms"
    )
    for row in rows.select(cols).iter_rows():
        t.add_row(*(str(v) for v in row))
    return t
