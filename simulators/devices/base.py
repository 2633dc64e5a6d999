"""The device-model contract: a model turns a context (time, weather, rng) into reading blocks.

A :class:`Block` holds the readings of one metric for a group of devices as flat numpy columns, plus
the day totals of the quantity the ground truth accounts (with and without the intervention). Models
never loop per reading: a year of 15-minute data for a thousand devices is a few array operations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulators.clock import LocalTime, TimeGrid
from simulators.devices.weather import CityWeather
from simulators.scenario import DeviceGroup


@dataclass(frozen=True, slots=True)
class DayTotals:
    """Per local day, the accounted quantity summed over a block's devices."""

    day: np.ndarray  # int64 local dates (days since 1970-01-01), ascending, unique
    actual: np.ndarray  # float64, with the intervention, canonical unit of the metric
    baseline: np.ndarray  # float64, the same devices without the intervention


@dataclass(frozen=True, slots=True)
class Block:
    """Readings of one metric for a group of devices, as flat columns."""

    metric: str  # metric name (pilotstream.vocab)
    device_ids: tuple[str, ...]  # the group's devices; ``device`` indexes into it
    device: np.ndarray  # int32 per reading: index into device_ids
    ts_ms: np.ndarray  # int64 per reading: event time, UTC ms
    value: np.ndarray  # float64 per reading: canonical unit (register, gauge or per-interval)
    truth: DayTotals | None = None  # accounted flow per local day, None when not accounted
    start_ms: np.ndarray | None = None  # int64 per reading, trips only: when the trip started

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(frozen=True, slots=True)
class ModelContext:
    """What a model may use: the grid, the city's calendar and weather, a seeded generator."""

    grid: TimeGrid
    local: LocalTime  # calendar of grid.ts_ms in the pilot's city
    weather: CityWeather  # the city's weather on the grid
    rng: np.random.Generator  # seeded per device group
    lat: float  # city latitude, degrees
    lon: float  # city longitude, degrees


Model = Callable[[ModelContext, DeviceGroup, tuple[str, ...]], list[Block]]


def dense_block(metric: str, ids: tuple[str, ...], grid: TimeGrid, values: np.ndarray) -> Block:
    """A block from an (n_devices, n_steps) array on the regular grid."""
    n, m = values.shape
    return Block(
        metric=metric,
        device_ids=ids,
        device=np.repeat(np.arange(n, dtype=np.int32), m),
        ts_ms=np.tile(grid.ts_ms, n),
        value=values.ravel(),
    )


def day_totals(day: np.ndarray, actual: np.ndarray, baseline: np.ndarray) -> DayTotals:
    """Sum per-step flows (shape (n, m) or (m,), steps aligned with ``day``) per local day."""
    a = actual.sum(axis=0) if actual.ndim == 2 else actual
    b = baseline.sum(axis=0) if baseline.ndim == 2 else baseline
    days, inverse = np.unique(day, return_inverse=True)
    return DayTotals(
        day=days,
        actual=np.bincount(inverse, weights=a, minlength=len(days)),
        baseline=np.bincount(inverse, weights=b, minlength=len(days)),
    )


def with_effect(flow: np.ndarray, after: np.ndarray, effect: float) -> np.ndarray:
    """The flow with the intervention: scaled by (1 + effect) from the intervention on."""
    return flow * np.where(after, 1.0 + effect, 1.0)


def counts_with_effect(
    rng: np.random.Generator, base: np.ndarray, after: np.ndarray, effect: float
) -> np.ndarray:
    """Integer counts with the intervention, coupled to ``base`` so the effect is not lost in noise.

    A fall thins the baseline counts (binomial, keep probability 1 + effect); a rise adds
    Poisson counts with mean ``effect * base``.
    """
    mask = np.broadcast_to(after, base.shape)
    if effect < 0:
        kept = rng.binomial(base.astype(np.int64), 1.0 + effect)
        return np.where(mask, kept, base).astype(np.float64)
    extra = rng.poisson(effect * base)
    return np.where(mask, base + extra, base).astype(np.float64)
