"""Simulated data with known truth for the processor tests (numpy only, seeded)."""

from __future__ import annotations

import numpy as np
import polars as pl

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
T0 = 1_672_531_200_000  # 2023-01-01T00:00Z


def readings(rows: list[tuple[str, str, str, int, float]], tenant: str = "t") -> pl.DataFrame:
    """A reading frame from (device, metric, kind, ts_ms, value) tuples."""
    dev, met, kind, ts, val = zip(*rows, strict=True)
    n = len(rows)
    return pl.DataFrame(
        {
            "tenant": [tenant] * n,
            "device_id": list(dev),
            "metric": list(met),
            "kind": list(kind),
            "ts_ms": list(ts),
            "value": list(val),
            "seq": [-1] * n,
            "received_at_ms": [0] * n,
        },
        schema={
            "tenant": pl.String,
            "device_id": pl.String,
            "metric": pl.String,
            "kind": pl.String,
            "ts_ms": pl.Int64,
            "value": pl.Float64,
            "seq": pl.Int64,
            "received_at_ms": pl.Int64,
        },
    )


def temperature(hours: int, seed: int = 0) -> np.ndarray:
    """Hourly outdoor temperature over ``hours`` from T0: seasons, days, noise (Celsius)."""
    rng = np.random.default_rng(seed)
    h = np.arange(hours)
    return (
        10.0
        - 11.0 * np.cos(2 * np.pi * h / 8760)
        + 4.0 * np.sin(2 * np.pi * (h % 24 - 9) / 24)
        + rng.normal(0, 1.5, hours)
    )


def building(
    devices: int, *, days: int = 730, seed: int = 1, reduction: float = 0.1, noise: float = 3.0
) -> tuple[pl.DataFrame, float]:
    """Hourly use of office buildings; the second year uses ``1 - reduction`` of the truth.

    Returns:
        (frame of device_id, ts_ms, usage, temperature, true_baseline), the true avoided kWh
        of the second year.
    """
    rng = np.random.default_rng(seed)
    hours = days * 24
    h = np.arange(hours)
    temp = temperature(hours, seed)
    ts = T0 + h.astype(np.int64) * HOUR_MS
    hour = (h + 1) % 24  # local (Paris winter) hour of day
    weekday = ((h + 1) // 24 + 6) % 7  # 2023-01-01 was a Sunday
    occupied = (hour >= 8) & (hour < 19) & (weekday < 5)
    frames = []
    avoided = 0.0
    second = h >= 365 * 24
    for d in range(devices):
        size = 1.0 + 0.2 * d
        truth = size * (
            20
            + 30 * occupied
            + 2.0 * np.maximum(14 - temp, 0) * (1 + occupied)
            + 3.0 * np.maximum(temp - 22, 0) * occupied
        )
        actual = truth * np.where(second, 1 - reduction, 1.0) + rng.normal(0, noise * size, hours)
        avoided += float((truth[second] * reduction).sum())
        frames.append(
            pl.DataFrame(
                {
                    "device_id": f"b{d:03d}",
                    "ts_ms": ts,
                    "usage": actual,
                    "temperature": temp,
                    "true_baseline": truth,
                }
            )
        )
    return pl.concat(frames), avoided


def provider(frame: pl.DataFrame):
    """A history provider over an in-memory frame."""

    def history(ids, metric, start, end):
        return frame.filter(
            pl.col("device_id").is_in(list(ids))
            & (pl.col("ts_ms") >= start)
            & (pl.col("ts_ms") < end)
        )

    return history
