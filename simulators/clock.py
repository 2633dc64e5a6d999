"""Simulation time: the UTC reading grid and its city-local calendar (hour, weekday, local date)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from simulators.scenario import Scenario


@dataclass(frozen=True, slots=True)
class TimeGrid:
    """Regular reading times from ``start_ms`` every ``step_ms``, ``steps`` of them."""

    start_ms: int  # first reading, UTC ms
    step_ms: int  # interval, ms
    steps: int  # number of readings per device
    intervention_ms: int  # readings at or after this time see the intervention

    @classmethod
    def of(cls, scn: Scenario) -> TimeGrid:
        """The grid of a scenario."""
        step_ms = scn.step_s * 1000
        return cls(scn.start_ms, step_ms, scn.days * 86_400_000 // step_ms, scn.intervention_ms)

    @property
    def ts_ms(self) -> np.ndarray:
        """Reading times, int64 UTC ms (the end of each interval is ``ts + step``)."""
        return self.start_ms + self.step_ms * np.arange(self.steps, dtype=np.int64)

    @property
    def after(self) -> np.ndarray:
        """Boolean per step: True once the intervention has begun."""
        return self.ts_ms >= self.intervention_ms

    @property
    def step_h(self) -> float:
        """The interval in hours (to turn kW into kWh per interval)."""
        return self.step_ms / 3_600_000


@dataclass(frozen=True, slots=True)
class LocalTime:
    """City-local calendar of each grid step (wall clock, so DST is honoured)."""

    hour: np.ndarray  # float local hour of day, 0 <= h < 24
    weekday: np.ndarray  # int, 0 = Monday .. 6 = Sunday
    day: np.ndarray  # int local date as days since 1970-01-01
    doy: np.ndarray  # int day of year, 1..366

    @classmethod
    def of(cls, ts_ms: np.ndarray, tz: str) -> LocalTime:
        """Local calendar of UTC times ``ts_ms`` in time zone ``tz``."""
        return local_calendar(ts_ms, tz)


def local_calendar(ts_ms: np.ndarray, tz: str) -> LocalTime:
    """Vectorised UTC -> local conversion (one polars expression per field)."""
    local = pl.Series("t", ts_ms, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC"))
    local = local.dt.convert_time_zone(tz)
    frame = pl.DataFrame({"t": local}).select(
        hour=pl.col("t").dt.hour().cast(pl.Float64)
        + pl.col("t").dt.minute().cast(pl.Float64) / 60
        + pl.col("t").dt.second().cast(pl.Float64) / 3600,
        weekday=pl.col("t").dt.weekday().cast(pl.Int64) - 1,
        day=pl.col("t").dt.date().cast(pl.Int64),
        doy=pl.col("t").dt.ordinal_day().cast(pl.Int64),
    )
    return LocalTime(
        hour=frame["hour"].to_numpy(),
        weekday=frame["weekday"].to_numpy(),
        day=frame["day"].to_numpy(),
        doy=frame["doy"].to_numpy(),
    )


def solar_elevation_sin(ts_ms: np.ndarray, lat: float, lon: float) -> np.ndarray:
    """Sine of the sun's elevation (approximate: declination and hour angle, no equation of time)."""
    days = ts_ms / 86_400_000.0
    doy = np.mod(days, 365.2422)
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (doy - 80) / 365.2422)
    solar_hour = np.mod(days, 1.0) * 24 + lon / 15.0
    hour_angle = np.deg2rad(15.0 * (solar_hour - 12.0))
    phi = np.deg2rad(lat)
    out: np.ndarray = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)
    return out
