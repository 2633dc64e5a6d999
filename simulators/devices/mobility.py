"""Mobility devices: traffic and bike counters, shared e-scooter / e-bike trips, bus passenger counts.

Counts are Poisson draws around a time-of-week profile; the intervention is coupled to the baseline
draw (thinning for a fall, extra arrivals for a rise) so the true effect is exact per day, not lost in
noise. A count read at ``t_k`` covers ``[t_k, t_k + step)``.
"""

from __future__ import annotations

import numpy as np

from simulators.devices.base import Block, ModelContext, counts_with_effect, day_totals, dense_block
from simulators.devices.weather import HOUR_MS
from simulators.scenario import DeviceGroup

SPEED_KMH = {"escooter": 14.0, "ebike": 16.0}


def commute_profile(hour: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Relative traffic per step: morning and evening peaks on weekdays, a midday hump at weekends."""
    work = (
        0.15
        + 1.0 * np.exp(-(((hour - 8.0) / 1.2) ** 2))
        + 0.9 * np.exp(-(((hour - 17.0) / 1.5) ** 2))
        + 0.45 * ((hour >= 9.5) & (hour < 16.0))
    )
    rest = 0.1 + 0.6 * np.exp(-(((hour - 14.0) / 3.0) ** 2))
    night = (hour < 5.0) * 0.8
    out: np.ndarray = np.where(weekday < 5, work, rest) * (1.0 - night)
    return out


def raining(ctx: ModelContext) -> np.ndarray:
    """Boolean per grid step: it rains in that hour."""
    hour_idx = (ctx.grid.ts_ms - ctx.weather.hour_ts_ms[0]) // HOUR_MS
    wet: np.ndarray = ctx.weather.hour_rain[hour_idx] > 0.0
    return wet


def traffic_counter(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """Vehicles per class per interval (``params.classes``, default car and bus)."""
    return _counter(ctx, g, ids, list(g.params.get("classes", ["car", "bus"])))


def bike_counter(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """Bikes per interval (a traffic counter whose only class is bike)."""
    return _counter(ctx, g, ids, list(g.params.get("classes", ["bike"])))


def _counter(
    ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...], classes: list[str]
) -> list[Block]:
    p = g.params
    n, _m = len(ids), ctx.grid.steps
    profile = commute_profile(ctx.local.hour, ctx.local.weekday)
    wet = raining(ctx)
    effects: dict[str, float] = dict(p.get("effects", {}))
    per_h: dict[str, float] = {"car": 300.0, "bus": 12.0, "bike": 80.0, **p.get("per_h", {})}
    blocks = []
    for cls in classes:  # a handful of classes, each vectorised over devices and steps
        weather = np.where(wet, 0.5, 1.0) if cls == "bike" else 1.0
        scale = ctx.rng.lognormal(0.0, 0.3, (n, 1))
        lam = scale * per_h[cls] * profile * weather * ctx.grid.step_h
        base = ctx.rng.poisson(lam).astype(np.float64)
        effect = float(effects.get(cls, g.effect if cls == "car" else 0.0))
        actual = counts_with_effect(ctx.rng, base, ctx.grid.after, effect)
        block = dense_block(f"traffic.count.{cls}", ids, ctx.grid, actual)
        truth = day_totals(ctx.local.day, actual, base)
        blocks.append(Block(block.metric, ids, block.device, block.ts_ms, block.value, truth))
    return blocks


def bus_passengers(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """Boardings per interval counted at the doors of a bus line's vehicles."""
    n = len(ids)
    profile = commute_profile(ctx.local.hour, ctx.local.weekday)
    scale = ctx.rng.lognormal(0.0, 0.2, (n, 1))
    lam = scale * g.params.get("boardings_per_h", 60.0) * profile * ctx.grid.step_h
    base = ctx.rng.poisson(lam).astype(np.float64)
    actual = counts_with_effect(ctx.rng, base, ctx.grid.after, g.effect)
    block = dense_block("passengers.count.bus", ids, ctx.grid, actual)
    truth = day_totals(ctx.local.day, actual, base)
    return [Block(block.metric, ids, block.device, block.ts_ms, block.value, truth)]


def shared_trips(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """Shared e-scooters or e-bikes (``params.mode``): one reading per trip, its km, at its end
    (the block keeps each trip's start too: ``Run.trips``).

    At most one trip per vehicle and interval, so a vehicle's trips never overlap; the intervention
    raises (or lowers) the trip probability with the same uniform draw, so baseline trips are a
    subset of the actual ones when the effect is positive.
    """
    p = g.params
    mode = str(p.get("mode", "escooter"))
    n, m = len(ids), ctx.grid.steps
    step_s = ctx.grid.step_ms / 1000
    prob = p.get("trip_p", 0.12) * commute_profile(ctx.local.hour, ctx.local.weekday)
    prob = prob * np.where(raining(ctx), 0.4, 1.0)
    u = ctx.rng.random((n, m))
    base = u < prob
    actual = u < np.minimum(prob * np.where(ctx.grid.after, 1.0 + g.effect, 1.0), 1.0)
    speed = SPEED_KMH.get(mode, 15.0)
    max_km = speed * step_s / 3600 * 0.95
    km = np.clip(ctx.rng.lognormal(np.log(p.get("median_km", 1.8)), 0.5, (n, m)), 0.3, max_km)
    km = np.round(km, 3)
    dur_s = km / speed * 3600
    offset_s = ctx.rng.random((n, m)) * (step_s - dur_s)
    start_ms = ctx.grid.ts_ms + np.round(offset_s).astype(np.int64) * 1000
    end_ms = ctx.grid.ts_ms + np.round(offset_s + dur_s).astype(np.int64) * 1000
    dev, step = np.nonzero(actual)
    block = Block(
        metric=f"trip.distance.{mode}",
        device_ids=ids,
        device=dev.astype(np.int32),
        ts_ms=end_ms[dev, step],
        value=km[dev, step],
        truth=day_totals(ctx.local.day, np.where(actual, km, 0.0), np.where(base, km, 0.0)),
        start_ms=start_ms[dev, step],
    )
    return [block]
