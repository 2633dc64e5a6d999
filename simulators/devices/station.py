"""Weather station: the city's hourly air temperature (with sensor noise) and rain per hour."""

from __future__ import annotations

import numpy as np

from simulators.devices.base import Block, ModelContext
from simulators.scenario import DeviceGroup


def weather_station(ctx: ModelContext, g: DeviceGroup, ids: tuple[str, ...]) -> list[Block]:
    """Hourly ``weather.temperature`` (Cel) and ``weather.rain`` (mm in the hour that starts)."""
    w = ctx.weather
    end = ctx.grid.start_ms + ctx.grid.steps * ctx.grid.step_ms
    inside = (w.hour_ts_ms >= ctx.grid.start_ms) & (w.hour_ts_ms < end)
    ts, temp, rain = w.hour_ts_ms[inside], w.hour_temp[inside], w.hour_rain[inside]
    n, m = len(ids), len(ts)
    device = np.repeat(np.arange(n, dtype=np.int32), m)
    sensed = np.round(temp + ctx.rng.normal(0.0, 0.1, (n, m)), 2)
    return [
        Block("weather.temperature", ids, device, np.tile(ts, n), sensed.ravel()),
        Block("weather.rain", ids, device, np.tile(ts, n), np.tile(rain, n)),
    ]
