"""Fakes of the processor's I/O edges, subclassing the real contracts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from storage.frames import (
    READINGS,
    READINGS_DEFAULTS,
    REJECTIONS,
    REJECTIONS_DEFAULTS,
    WINDOWS,
    conform,
)
from storage.writer import CommitResult, Writer


class FakeWriter(Writer):
    """Records every commit (conformed like the real writer does) instead of writing."""

    def __init__(self) -> None:
        super().__init__(dsn="host=unused")
        self.commits: list[dict[str, Any]] = []

    async def commit_batch(
        self,
        *,
        readings: Any,
        windows: Any = None,
        rejections: Any = None,
        offsets: Mapping[tuple[str, int], int],
        group: str,
        generation: int,
    ) -> CommitResult:
        """Keep the payload; every window counts as new (revision 1)."""
        rd = (
            conform("readings", readings, READINGS, READINGS_DEFAULTS)
            if readings is not None
            else None
        )
        wn = conform("windows", windows, WINDOWS) if windows is not None else None
        rj = (
            conform("rejections", rejections, REJECTIONS, REJECTIONS_DEFAULTS)
            if rejections is not None
            else None
        )
        self.commits.append(
            {
                "readings": rd,
                "windows": wn,
                "rejections": rj,
                "offsets": dict(offsets),
                "group": group,
                "generation": generation,
            }
        )
        changed = (
            wn.select("device_id", "metric", "width_s", "bucket_start_ms").with_columns(
                revision=pl.lit(1, pl.Int32)
            )
            if wn is not None
            else pl.DataFrame()
        )
        return CommitResult(
            readings_new=0 if rd is None else rd.height,
            readings_duplicate=0,
            windows_new=changed.height,
            windows_revised=0,
            windows_unchanged=0,
            rejections=0 if rj is None else rj.height,
            offsets=len(offsets),
            attempts=1,
            windows_changed=changed,
        )


class FixedBaseline:
    """A provider giving every window that needs one the same baseline; reporting from a time."""

    def __init__(self, *, baseline: float, reporting_from_ms: int = 0):
        self.baseline = baseline
        self.reporting_from_ms = reporting_from_ms
        self.calls = 0

    async def annotate(self, windows: pl.DataFrame) -> pl.DataFrame:
        """See processors.baseline_provider.BaselineProvider."""
        self.calls += 1
        reporting = pl.col("bucket_start_ms") >= self.reporting_from_ms
        return windows.with_columns(
            baseline=pl.when(pl.col("needs_baseline") & reporting).then(
                pl.col("width_s") / 3600 * self.baseline
            ),
            baseline_model_id=pl.when(pl.col("needs_baseline"))
            .then(pl.lit("fixed"))
            .otherwise(pl.lit("")),
            reporting=reporting,
        )

    def pending(self) -> int:
        """See processors.baseline_provider.BaselineProvider."""
        return 0
