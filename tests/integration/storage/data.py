"""Small hand-built batches for the storage tests."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def ms(dt: datetime) -> int:
    """UTC milliseconds of an aware datetime."""
    return int(dt.timestamp() * 1000)


def utc(*args: int) -> datetime:
    """datetime(..., tzinfo=UTC)."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def readings(
    *,
    tenant: str,
    device: str,
    start_ms: int,
    n: int,
    step_ms: int = MINUTE_MS,
    metric: str = "power.active",
    value0: float = 0.0,
) -> pl.DataFrame:
    """``n`` readings of one device and metric, ``step_ms`` apart, values value0, value0+1, ..."""
    ts = start_ms + np.arange(n, dtype=np.int64) * step_ms
    return pl.DataFrame(
        {
            "ts_ms": ts,
            "tenant": [tenant] * n,
            "device_id": [device] * n,
            "metric": [metric] * n,
            "value": value0 + np.arange(n, dtype=np.float64),
            "seq": np.arange(n, dtype=np.int64),
            "received_at_ms": ts + 500,
            "quality": np.zeros(n, dtype=np.int16),
        }
    )


def windows(
    *,
    tenant: str,
    device: str,
    starts_ms: list[int],
    actual: list[float],
    baseline: list[float],
    factor: float = 0.1,
    width_s: int = 3600,
    metric: str = "energy.active.import",
) -> pl.DataFrame:
    """Window results with delta = baseline - actual and avoided = delta * factor."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    n = len(starts_ms)
    return pl.DataFrame(
        {
            "bucket_start_ms": starts_ms,
            "width_s": [width_s] * n,
            "tenant": [tenant] * n,
            "device_id": [device] * n,
            "metric": [metric] * n,
            "actual": a,
            "baseline": b,
            "delta": b - a,
            "factor": [factor] * n,
            "avoided_co2e_kg": (b - a) * factor,
            "coverage": [1.0] * n,
            "baseline_model_id": ["model-1"] * n,
            "factor_id": ["grid-fr-2023"] * n,
        }
    )


def rejections(*, tenant: str, device: str, reasons: list[str], at_ms: int) -> pl.DataFrame:
    """One dead letter per reason."""
    n = len(reasons)
    return pl.DataFrame(
        {
            "received_at_ms": [at_ms] * n,
            "tenant": [tenant] * n,
            "device_id": [device] * n,
            "reason": reasons,
            "topic": [f"pilots/{tenant}/json/{device}"] * n,
            "detail": ["test"] * n,
            "gateway_id": ["gw-1"] * n,
            "payload": [b"{\x00bad"] * n,
            "payload_size": [6] * n,
        }
    )
