"""Render a :class:`~processors.report.data.Report` as Markdown (images beside), HTML (images
embedded as base64 PNG) or PDF (matplotlib's PdfPages)."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from processors.report.charts import CHARTS, render_charts
from processors.report.data import Report

FORMATS = ("md", "html", "pdf")


@dataclass(frozen=True, slots=True)
class Section:
    """One titled block of the report."""

    title: str
    lines: tuple[str, ...]
    table: pl.DataFrame | None = None


def write_report(report: Report, path: Path, fmt: str) -> list[Path]:
    """Write the report to ``path`` in ``fmt``; returns every file written (md adds PNGs)."""
    if fmt not in FORMATS:
        msg = f"format must be one of {FORMATS}, not {fmt!r}"
        raise ValueError(msg)
    charts = render_charts(report)
    sections = sections_of(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "md":
        written = []
        refs = {}
        for name, png in charts.items():
            image = path.with_name(f"{path.stem}_{name}.png")
            image.write_bytes(png)
            written.append(image)
            refs[name] = image.name
        path.write_text(_markdown(report, sections, refs), "utf-8")
        return [path, *written]
    if fmt == "html":
        path.write_text(_html(report, sections, charts), "utf-8")
        return [path]
    _pdf(report, sections, charts, path)
    return [path]


def sections_of(report: Report) -> list[Section]:
    """The report's sections in order (titles are ``data.SECTIONS``)."""
    inp = report.input
    fsu = "not computable" if math.isnan(report.fsu) else f"+/- {100 * report.fsu:.1f} %"
    energy = report.savings.filter(pl.col("unit") == "kWh")["avoided"].sum()
    periods = [
        f"Reporting period: {_day(inp.start_ms)} to {_day(inp.end_ms)} (local days in {inp.tz}).",
        *sorted(
            {
                f"Baseline period of {r['device_id']}: {r['baseline_from']} to {r['baseline_to']}"
                for r in report.fit.iter_rows(named=True)
            }
        ),
    ]
    return [
        Section("Method", (inp.method, f"Pilots: {', '.join(inp.tenants)}.")),
        Section("Periods", tuple(periods)),
        Section(
            "Data coverage",
            (
                "Coverage is the share of expected readings present; masked windows (gaps, faults, "
                "low coverage, excluded periods) count no avoided energy.",
            ),
            report.coverage,
        ),
        Section(
            "Baseline fit",
            (
                "ASHRAE Guideline 14: CV(RMSE) <= 30 % and |NMBE| <= 10 % for hourly and daily "
                "models; models failing data sufficiency are listed with their reasons and their "
                "results are flagged.",
            ),
            report.fit.drop("model_id"),
        ),
        Section(
            "Savings",
            (
                f"Avoided energy: {energy:,.1f} kWh.",
                f"Avoided emissions: {report.total_t_co2e:,.3f} tCO2e.",
                f"Fractional savings uncertainty (90 % confidence, ASHRAE G14 Annex B): {fsu}.",
            ),
            report.savings,
        ),
        Section(
            "Emission factors",
            ("Factors applied, with their basis, source and year.",),
            inp.factors,
        ),
        Section(
            "Excluded periods",
            ("Device swaps and non-routine events, cut from fitting and flagged in reporting.",)
            if report.excluded.height
            else ("None.",),
            report.excluded if report.excluded.height else None,
        ),
        Section("Charts", tuple(CHARTS.values())),
    ]


def _markdown(report: Report, sections: list[Section], refs: dict[str, str]) -> str:
    out = [f"# Measurement and verification report: {report.input.title}", ""]
    for s in sections:
        out += [f"## {s.title}", "", *[f"{line}  " for line in s.lines], ""]
        if s.table is not None:
            out += [_md_table(s.table), ""]
        if s.title == "Charts":
            out += [f"![{CHARTS[name]}]({ref})" for name, ref in refs.items()]
    return "\n".join(out) + "\n"


def _md_table(table: pl.DataFrame) -> str:
    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.iter_rows()]
    return "\n".join([head, rule, *body])


def _html(report: Report, sections: list[Section], charts: dict[str, bytes]) -> str:
    title = html.escape(f"Measurement and verification report: {report.input.title}")
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}</style>",
        f"</head><body><h1>{title}</h1>",
    ]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        out += [f"<p>{html.escape(line)}</p>" for line in s.lines]
        if s.table is not None:
            cols = "".join(f"<th>{html.escape(c)}</th>" for c in s.table.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r) + "</tr>"
                for r in s.table.iter_rows()
            )
            out.append(f"<table><tr>{cols}</tr>{rows}</table>")
        if s.title == "Charts":
            for name, png in charts.items():
                data = base64.b64encode(png).decode()
                out.append(
                    f"<img alt='{html.escape(CHARTS[name])}' src='data:image/png;base64,{data}'>"
                )
    return "".join(out) + "</body></html>\n"


def _pdf(report: Report, sections: list[Section], charts: dict[str, bytes], path: Path) -> None:
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        for s in sections:
            text = "\n".join(s.lines)
            if s.table is not None:
                with pl.Config(tbl_rows=40, tbl_cols=14, tbl_width_chars=140, fmt_str_lengths=30):
                    text += "\n\n" + str(s.table)
            fig = plt.figure(figsize=(11.7, 8.3))
            fig.text(0.04, 0.95, s.title, fontsize=16, va="top")
            fig.text(0.04, 0.90, text, fontsize=7, va="top", family="monospace", wrap=True)
            pdf.savefig(fig)
            plt.close(fig)
        for name, png in charts.items():
            fig = plt.figure(figsize=(11.7, 8.3))
            ax = fig.add_axes((0.05, 0.05, 0.9, 0.85))
            ax.imshow(mpimg.imread(io.BytesIO(png), format="png"))
            ax.axis("off")
            fig.suptitle(CHARTS[name])
            pdf.savefig(fig)
            plt.close(fig)
        meta = pdf.infodict()
        meta["Title"] = f"M&V report {report.input.title}"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.1f}"
    return "" if value is None else str(value)


def _day(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")
