"""The provider's memory of recently closed hourly windows is bounded by calls, not by history."""

from __future__ import annotations

from typing import Any

import polars as pl

from pilotstream.registry import load_registry
from processors.baseline_provider import RECENT_CALLS, StoredBaselines

HOUR_MS = 3_600_000
METRIC = "energy.active.import"


def _hourly(devices: int, first_hour: int, hours: int) -> pl.DataFrame:
    """Closed hourly windows of ``devices`` devices, ``hours`` per device from ``first_hour``."""
    n = devices * hours
    return pl.DataFrame(
        {
            "device_id": [f"d{d}" for d in range(devices) for _ in range(hours)],
            "metric": [METRIC] * n,
            "width_s": [3600] * n,
            "bucket_start_ms": [
                (first_hour + h) * HOUR_MS for _ in range(devices) for h in range(hours)
            ],
            "actual": [1.0] * n,
        }
    )


def _provider() -> StoredBaselines:
    conn: Any = None  # _remember does not touch the database
    return StoredBaselines(conn=conn, registry=load_registry())


def test_a_long_run_keeps_the_last_calls_windows_only() -> None:
    provider = _provider()
    calls = 3 * RECENT_CALLS  # each call closes one more hour of every device
    for call in range(calls):
        provider._remember(_hourly(100, call, 1))
    recent = provider._recent
    # a device without a model no longer costs one row per hour of its history
    assert recent.height == RECENT_CALLS * 100
    assert recent["ts_ms"].min() == (calls - RECENT_CALLS) * HOUR_MS


def test_a_backlog_call_is_kept_whole_while_it_is_recent() -> None:
    provider = _provider()
    provider._remember(_hourly(2, 0, 24 * 30))  # a replay closing a month at once
    for call in range(1, RECENT_CALLS):
        provider._remember(_hourly(2, 24 * 30 + call, 1))
    assert provider._recent.height == 2 * 24 * 30 + 2 * (RECENT_CALLS - 1)
    provider._remember(_hourly(2, 24 * 31, 1))  # the backlog call is now RECENT_CALLS calls old
    assert provider._recent.height == 2 * RECENT_CALLS
