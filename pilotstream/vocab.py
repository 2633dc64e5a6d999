"""Metric and unit vocabulary: the one place that says what a metric is and how units convert.

Every conversion to a canonical unit happens once, in ingest, through :func:`to_canonical`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "delta"]
KINDS: tuple[Kind, ...] = ("counter", "gauge", "delta")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """What a metric measures."""

    name: str  # dotted, lower case
    unit: str  # canonical unit
    kind: Kind  # counter: cumulative register; gauge: instantaneous; delta: per interval
    lot: Literal["energy", "mobility", "weather"]
    description: str


_METRICS = (
    MetricSpec(
        "energy.active.import", "kWh", "counter", "energy", "imported active energy register"
    ),
    MetricSpec(
        "energy.active.export", "kWh", "counter", "energy", "exported active energy register"
    ),
    MetricSpec("energy.heat", "kWh", "counter", "energy", "heat meter register"),
    MetricSpec("energy.pv.daily", "kWh", "counter", "energy", "PV energy today, resets at night"),
    MetricSpec("energy.lighting", "kWh", "delta", "energy", "street lighting energy per interval"),
    MetricSpec("power.active", "kW", "gauge", "energy", "instantaneous active power"),
    MetricSpec("traffic.count.car", "count", "delta", "mobility", "cars counted per interval"),
    MetricSpec("traffic.count.bike", "count", "delta", "mobility", "bikes counted per interval"),
    MetricSpec("traffic.count.bus", "count", "delta", "mobility", "buses counted per interval"),
    MetricSpec("passengers.count.bus", "count", "delta", "mobility", "bus boardings per interval"),
    MetricSpec(
        "trip.distance.escooter", "km", "delta", "mobility", "shared e-scooter trip distance"
    ),
    MetricSpec("trip.distance.ebike", "km", "delta", "mobility", "shared e-bike trip distance"),
    MetricSpec("weather.temperature", "Cel", "gauge", "weather", "outdoor air temperature"),
    MetricSpec("weather.rain", "mm", "delta", "weather", "rain per interval"),
)
METRICS: dict[str, MetricSpec] = {m.name: m for m in _METRICS}

# unit -> (canonical unit, scale, offset): canonical = value * scale + offset
UNITS: dict[str, tuple[str, float, float]] = {
    "kWh": ("kWh", 1.0, 0.0),
    "Wh": ("kWh", 1e-3, 0.0),
    "MWh": ("kWh", 1e3, 0.0),
    "GJ": ("kWh", 1e9 / 3.6e6, 0.0),
    "MJ": ("kWh", 1e6 / 3.6e6, 0.0),
    "J": ("kWh", 1.0 / 3.6e6, 0.0),
    "kW": ("kW", 1.0, 0.0),
    "W": ("kW", 1e-3, 0.0),
    "MW": ("kW", 1e3, 0.0),
    "Cel": ("Cel", 1.0, 0.0),
    "K": ("Cel", 1.0, -273.15),
    "m3": ("m3", 1.0, 0.0),
    "count": ("count", 1.0, 0.0),
    "km": ("km", 1.0, 0.0),
    "m": ("km", 1e-3, 0.0),
    "mm": ("mm", 1.0, 0.0),
}

# A SenML sum ("s") is the time integral in unit x seconds; these are the units it may carry
# for each canonical energy unit (W s = J).
SUM_UNITS: dict[str, str] = {"W": "J", "kW": "kJ"}


def canonical_unit(metric: str) -> str:
    """The canonical unit of a known metric; raises KeyError for an unknown one."""
    return METRICS[metric].unit


def conversion(unit: str, metric: str) -> tuple[float, float] | None:
    """(scale, offset) that turns ``unit`` into ``metric``'s canonical unit, or None if they do not fit."""
    spec = METRICS.get(metric)
    entry = UNITS.get(unit)
    if spec is None or entry is None or entry[0] != spec.unit:
        return None
    return entry[1], entry[2]


def to_canonical(value: float, unit: str, metric: str) -> float:
    """Convert one value; raises KeyError when unit and metric do not fit."""
    conv = conversion(unit, metric)
    if conv is None:
        msg = f"unit {unit!r} does not fit metric {metric!r}"
        raise KeyError(msg)
    return value * conv[0] + conv[1]
