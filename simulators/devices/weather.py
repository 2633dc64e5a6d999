"""City weather: hourly temperature (seasonal + diurnal cycle + synoptic anomalies) and rain.

The same weather drives every building of a city (heating and cooling degree-hours) and is what the
city's weather station reports, so baselines fitted on station data see the true driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.clock import TimeGrid
from simulators.scenario import Climate

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class CityWeather:
    """A city's weather, hourly and on the reading grid."""

    hour_ts_ms: np.ndarray  # int64 UTC ms, every hour of the period
    hour_temp: np.ndarray  # float64 Cel, hourly air temperature
    hour_rain: np.ndarray  # float64 mm per hour
    temp: np.ndarray  # float64 Cel on the reading grid (interpolated)


def city_weather(rng: np.random.Generator, grid: TimeGrid, climate: Climate) -> CityWeather:
    """Simulate a city's weather over the grid's period."""
    start = grid.start_ms - grid.start_ms % HOUR_MS
    hours = -(-(grid.start_ms + grid.steps * grid.step_ms - start) // HOUR_MS)
    ts = start + HOUR_MS * np.arange(hours, dtype=np.int64)
    days = ts / 86_400_000.0
    doy = np.mod(days, 365.2422)
    solar_hour = np.mod(days, 1.0) * 24 + climate.lon / 15.0
    seasonal = -climate.t_season * np.cos(2 * np.pi * (doy - 20) / 365.2422)
    diurnal = climate.t_diurnal * np.cos(2 * np.pi * (solar_hour - 15) / 24)
    temp = climate.t_mean + seasonal + diurnal + _synoptic(rng, hours) + rng.normal(0, 0.3, hours)
    wet = rng.random(hours) < climate.rain_p
    rain = np.where(wet, np.round(rng.exponential(1.2, hours), 1), 0.0)
    on_grid = np.interp(grid.ts_ms.astype(np.float64), ts.astype(np.float64), temp)
    return CityWeather(hour_ts_ms=ts, hour_temp=temp, hour_rain=rain, temp=on_grid)


def _synoptic(rng: np.random.Generator, hours: int) -> np.ndarray:
    """Multi-day warm and cold spells: daily anomalies smoothed over three days, then hourly."""
    n_days = hours // 24 + 4
    daily = rng.normal(0.0, 3.0, n_days)
    kernel = np.array([0.25, 0.5, 0.25])
    smooth = np.convolve(daily, kernel, mode="same")
    return np.interp(np.arange(hours) / 24.0, np.arange(n_days), smooth)
