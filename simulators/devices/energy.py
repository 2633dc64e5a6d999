"""Energy devices: building electricity meter, heat meter, EV charger, PV inverter, street lighting.

Each model draws its flow (kWh per interval) as an (n_devices, n_steps) array, applies the
intervention to a copy, and reports what the real device would: a cumulative register, a daily
counter or a per-interval delta. The interval of step ``k`` is ``[t_k, t_k + step)``: a register read
at ``t_k`` holds everything before ``t_k``, a delta read at ``t_k`` covers the interval it starts.
"""

from __future__ import annotations

import numpy as np

from simulators.clock import solar_elevation_sin
from simulators.devices.base import (
    Block,
    DayTotals,
    ModelContext,
    day_totals,
    dense_block,
    with_effect,
)
from simulators.scenario import DeviceGroup


def occupancy(hour: np.ndarray, weekday: np.ndarray, open_h: float, close_h: float) -> np.ndarray:
    """Share of full occupancy per step: working hours on weekdays, a little on Saturdays."""
    inside = (hour >= open_h) & (hour < close_h)
    return np.where(weekday < 5, inside * 1.0, np.where(weekday == 5, inside * 0.15, 0.0))


def degree_hours(
    temp: np.ndarray, heat_balance: float, cool_balance: float
) -> tuple[np.ndarray, ...]:
    """Heating and cooling degrees per step below / above the balance points, Cel."""
    return np.maximum(heat_balance - temp, 0.0), np.maximum(temp - cool_balance, 0.0)


def building_meter(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """Electricity meter of a building: cumulative kWh register every step."""
    p = g.params
    n = len(ids)
    occ = occupancy(ctx.local.hour, ctx.local.weekday, p.get("open_h", 7.0), p.get("close_h", 19.0))
    hdd, cdd = degree_hours(
        ctx.weather.temp, p.get("heat_balance", 15.0), p.get("cool_balance", 22.0)
    )
    kw = (
        p.get("base_kw", 12.0)
        + p.get("occupied_kw", 35.0) * occ
        + p.get("heat_kw_per_k", 1.2) * hdd
        + p.get("cool_kw_per_k", 2.0) * cdd
    )
    scale = ctx.rng.lognormal(0.0, 0.25, (n, 1))
    noise = 1.0 + p.get("noise", 0.05) * ctx.rng.standard_normal((n, ctx.grid.steps))
    flow = np.maximum(scale * kw * noise, 0.0) * ctx.grid.step_h
    return [_register("energy.active.import", ctx, g, ids, flow, init_kwh=(1e3, 5e4))]


def heat_meter(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """Heat meter: space heating from degree-hours plus hot water, cumulative register."""
    p = g.params
    n = len(ids)
    hdd, _ = degree_hours(ctx.weather.temp, p.get("heat_balance", 16.0), 99.0)
    kw = p.get("dhw_kw", 8.0) + p.get("ua_kw_per_k", 4.0) * hdd
    scale = ctx.rng.lognormal(0.0, 0.2, (n, 1))
    noise = 1.0 + p.get("noise", 0.04) * ctx.rng.standard_normal((n, ctx.grid.steps))
    flow = np.maximum(scale * kw * noise, 0.0) * ctx.grid.step_h
    return [_register("energy.heat", ctx, g, ids, flow, init_kwh=(1e5, 9e5))]


def ev_charger(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """EV charger: charging sessions, power while plugged, Wh energy register (sent as OCPP strings)."""
    p = g.params
    n, m = len(ids), ctx.grid.steps
    hour = ctx.local.hour
    start_p = p.get("start_p", 0.02) * np.where((hour >= 7) & (hour < 20), 1.0, 0.25)
    starts = ctx.rng.random((n, m)) < start_p
    steps = ctx.rng.integers(2, int(p.get("max_session_steps", 16)) + 1, (n, m))
    k = np.arange(m)
    end = np.where(starts, k + steps, -1)
    plugged = np.maximum.accumulate(end, axis=1) > k
    rate = ctx.rng.choice(np.asarray(p.get("rates_kw", [7.4, 11.0, 22.0])), (n, 1))
    kw = np.round(plugged * rate * ctx.rng.uniform(0.85, 1.0, (n, m)), 3)
    flow = kw * ctx.grid.step_h
    energy = _register("energy.active.import", ctx, g, ids, flow, init_kwh=(100.0, 20e3))
    power = dense_block("power.active", ids, ctx.grid, kw)
    return [energy, power]


def pv_inverter(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """PV inverter: irradiance-driven power and an energy counter that resets at local midnight."""
    p = g.params
    n, m = len(ids), ctx.grid.steps
    mid = ctx.grid.ts_ms + ctx.grid.step_ms // 2
    sun = np.maximum(solar_elevation_sin(mid, ctx.lat, ctx.lon), 0.0) ** 1.15
    days, day_idx = np.unique(ctx.local.day, return_inverse=True)
    clouds = ctx.rng.uniform(0.2, 1.0, (n, len(days)))[:, day_idx]
    kwp = ctx.rng.uniform(p.get("kwp_min", 10.0), p.get("kwp_max", 80.0), (n, 1))
    kw = np.round(kwp * 0.85 * sun * clouds, 3)
    flow = kw * ctx.grid.step_h
    before = _before(flow)
    first = np.r_[True, ctx.local.day[1:] != ctx.local.day[:-1]]
    day_start = np.maximum.accumulate(np.where(first, np.arange(m), 0))
    daily = np.round(before - before[:, day_start], 3)
    # truth: the generation, avoided grid electricity (the same with or without the pilot)
    truth = day_totals(ctx.local.day, flow, flow)
    return [
        _with_truth(dense_block("energy.pv.daily", ids, ctx.grid, daily), truth),
        dense_block("power.active", ids, ctx.grid, kw),
    ]


def street_lighting(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """Street lighting cabinet: on from dusk to dawn, dimmed at night, kWh per interval."""
    p = g.params
    n = len(ids)
    mid = ctx.grid.ts_ms + ctx.grid.step_ms // 2
    dark = solar_elevation_sin(mid, ctx.lat, ctx.lon) < -0.0145  # sun 0.833 deg below the horizon
    h = ctx.local.hour
    dim_from, dim_to = p.get("dim_from_h", 23.0), p.get("dim_to_h", 5.0)
    dimmed = (h >= dim_from) | (h < dim_to)
    level = np.where(dimmed, p.get("dim_level", 0.5), 1.0) * dark
    lamps_kw = ctx.rng.integers(20, 61, (n, 1)) * p.get("lamp_w", 60.0) / 1000
    flow = (
        lamps_kw
        * level
        * ctx.grid.step_h
        * (1 + 0.01 * ctx.rng.standard_normal((n, ctx.grid.steps)))
    )
    flow = np.round(np.maximum(flow, 0.0), 4)
    actual = np.round(with_effect(flow, ctx.grid.after, g.effect), 4)
    block = dense_block("energy.lighting", ids, ctx.grid, actual)
    truth = day_totals(ctx.local.day, actual, flow)
    return [_with_truth(block, truth)]


def _register(
    metric: str,
    ctx: ModelContext,
    g: DeviceGroup,
    ids: tuple[str, ...],
    flow: np.ndarray,
    *,
    init_kwh: tuple[float, float],
) -> Block:
    """A cumulative register read at each step (Wh resolution) and its accounted day totals."""
    actual = with_effect(flow, ctx.grid.after, g.effect)
    init = np.round(ctx.rng.uniform(*init_kwh, (len(ids), 1)), 3)
    register = np.round(init + _before(actual), 3)
    # only intervals between two readings are observable: drop the one after the last reading
    truth = day_totals(ctx.local.day[:-1], actual[:, :-1], flow[:, :-1])
    return _with_truth(dense_block(metric, ids, ctx.grid, register), truth)


def _before(flow: np.ndarray) -> np.ndarray:
    """Exclusive running sum along steps: what a register read at ``t_k`` holds beyond its start."""
    out = np.zeros_like(flow)
    np.cumsum(flow[:, :-1], axis=1, out=out[:, 1:])
    return out


def _with_truth(block: Block, truth: DayTotals) -> Block:
    return Block(block.metric, block.device_ids, block.device, block.ts_ms, block.value, truth)
