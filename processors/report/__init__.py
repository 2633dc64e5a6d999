"""Measurement-and-verification reports: figures from frames, charts, Markdown/HTML/PDF."""

from processors.report.data import SECTIONS, Report, ReportInput, build_report
from processors.report.render import FORMATS, sections_of, write_report

__all__ = [
    "FORMATS",
    "SECTIONS",
    "Report",
    "ReportInput",
    "build_report",
    "sections_of",
    "write_report",
]
