"""M&V report from frames: every section, both charts, each format."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pilotstream.registry import load_registry
from processors.baselines import fit_hourly, predict_windows
from processors.factors import load_factors
from processors.kernels import emission_deltas, pilot_rules
from processors.report import SECTIONS, build_report, write_report
from processors.report.charts import CHARTS
from processors.report.data import assemble_input

from .simdata import DAY_MS, T0, building

TZ = "Europe/Paris"
REPORT = (T0 + 365 * DAY_MS, T0 + 395 * DAY_MS)  # 30 days of the second year


@pytest.fixture(scope="module")
def report():
    frame, _ = building(2, days=395, reduction=0.1)
    models = fit_hourly(
        frame.filter(pl.col("ts_ms") < REPORT[0]),
        tz=TZ,
        metric="energy.active.import",
        period=(T0, REPORT[0]),
    )
    rep = frame.filter(pl.col("ts_ms") >= REPORT[0])
    windows = rep.select(
        "device_id",
        pl.lit("energy.active.import").alias("metric"),
        pl.col("ts_ms").alias("bucket_start_ms"),
        pl.lit(3600).alias("width_s"),
        pl.col("usage").alias("actual"),
        pl.lit(1.0).alias("coverage"),
        pl.when(pl.col("ts_ms") < REPORT[0] + DAY_MS).then(16).otherwise(0).alias("flags"),
    )
    temps = rep.select("ts_ms", "temperature").unique("ts_ms")
    predicted = predict_windows(models, windows, tz=TZ, temperature=temps)
    reg = load_registry()
    pilot = reg.pilots["paris-energy-1"]
    factors = load_factors()
    results = emission_deltas(
        predicted, rules=pilot_rules(pilot, reg.cities["paris"]), factors=factors
    )
    excluded = pl.DataFrame(
        {
            "device_id": ["b001"],
            "start_ms": [REPORT[0] + 3 * DAY_MS],
            "end_ms": [REPORT[0] + 4 * DAY_MS],
            "kind": ["device_swap"],
        }
    )
    inp = assemble_input(
        title="paris-energy-1",
        tenants=["paris-energy-1"],
        lots=["energy"],
        tz=TZ,
        start_ms=REPORT[0],
        end_ms=REPORT[1],
        windows=results,
        models=models,
        factors=factors.describe(results["factor_id"].unique().to_list()),
        excluded=excluded,
    )
    return build_report(inp), results


def test_figures_add_up(report) -> None:
    rep, results = report
    assert rep.total_t_co2e == pytest.approx(results["avoided_co2e_kg"].sum() / 1000)
    assert rep.total_t_co2e > 0
    assert rep.daily.height == 31  # 30 UTC days touch 31 local (Paris) days
    assert rep.daily["cumulative_t_co2e"][-1] == pytest.approx(rep.total_t_co2e)
    first_day = results.filter(pl.col("bucket_start_ms") < REPORT[0] + DAY_MS)
    assert (first_day["delta"] == 0).all()  # gap-flagged windows are masked
    assert 0 < rep.fsu < 1
    assert rep.fit["ashrae_met"].to_list() == [True, True]
    assert rep.excluded["kind"].to_list() == ["device_swap"]


def test_markdown_has_every_section_and_chart_files(report, tmp_path: Path) -> None:
    written = write_report(report[0], tmp_path / "r.md", "md")
    text = written[0].read_text()
    for title in SECTIONS:
        assert f"## {title}" in text
    for name in CHARTS:
        image = tmp_path / f"r_{name}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({image.name})" in text
    assert "grid-fr-2023" in text
    assert "Ember via Our World in Data" in text
    assert "Fractional savings uncertainty" in text


def test_html_embeds_charts_as_base64(report, tmp_path: Path) -> None:
    (path,) = write_report(report[0], tmp_path / "r.html", "html")
    text = path.read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    images = text.split("data:image/png;base64,")[1:]
    assert len(images) == len(CHARTS)
    assert base64.b64decode(images[0].split("'")[0])[:4] == b"\x89PNG"


def test_pdf_has_a_page_per_section_and_chart(report, tmp_path: Path) -> None:
    (path,) = write_report(report[0], tmp_path / "r.pdf", "pdf")
    data = path.read_bytes()
    assert data[:5] == b"%PDF-"
    pages = data.count(b"/Type /Page\n") + data.count(b"/Type /Page ")
    assert pages >= len(SECTIONS) + len(CHARTS) or data.count(b"/Type /Page") >= len(SECTIONS)


def test_unknown_format_is_refused(report, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        write_report(report[0], tmp_path / "r.doc", "doc")


def test_daily_reduction_is_visible() -> None:
    # sanity of the simulated truth used above: 10 % less in the reporting year
    frame, avoided = building(1, days=400, reduction=0.1)
    second = frame.filter(pl.col("ts_ms") >= T0 + 365 * DAY_MS)
    ratio = second["usage"].sum() / second["true_baseline"].sum()
    assert ratio == pytest.approx(0.9, abs=0.01)
    assert avoided == pytest.approx(0.1 * second["true_baseline"].sum())
    assert np.isfinite(avoided)
