"""Scenario files: which cities, pilots and devices to simulate, over which period, with which faults.

A scenario is a TOML file in ``simulators/scenarios/`` (or any path). Times are placed relative to a
fixed ``anchor_end`` in the file, so the same scenario and seed always produce the same bytes; a live
demo may move the anchor to "now" (:func:`end_at_now`) so its readings fall inside the gateway's
accepted time horizon.
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pilotstream.errors import PilotstreamError
from pilotstream.registry import Registry, load_registry
from pilotstream.topics import FORMATS

DAY_MS = 86_400_000


class ScenarioError(PilotstreamError):
    """A scenario file is missing, malformed or names something the registry does not know."""

    reason = "bad_scenario"


@dataclass(frozen=True, slots=True)
class Climate:
    """A city's climate and position, enough for temperature, rain and sun."""

    city: str  # City.id of the registry
    lat: float  # degrees north
    lon: float  # degrees east
    t_mean: float  # annual mean air temperature, Cel
    t_season: float  # half the summer-winter swing of daily means, Cel
    t_diurnal: float  # half the day-night swing, Cel
    rain_p: float  # probability that an hour is rainy, 0..1


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """``count`` identical devices of one model, owned by one pilot, sending in one format."""

    tenant: str  # pilot id (MQTT user and topic prefix)
    model: str  # name in simulators.devices.MODELS
    count: int  # number of devices
    fmt: str  # json | senml | ocpp | tts | chirpstack
    unit: str  # unit the devices send energy in ("" = the metric's canonical unit)
    effect: float  # relative change of the modelled flow after the intervention, e.g. -0.12
    id_prefix: str  # device ids are f"{tenant}-{id_prefix}-{i:03d}" (chirpstack: a DevEUI)
    application: str = ""  # LoRaWAN application (tts id or chirpstack UUID)
    params: dict[str, Any] = field(default_factory=dict)  # model parameters


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything a simulation run needs, validated against the registry."""

    name: str
    seed: int  # default seed; the CLI may override it
    anchor_end_ms: int  # end of the simulated period (exclusive), UTC ms
    days: int  # length of the period
    intervention_day: int  # days after the start when the intervention begins
    step_s: int  # reading interval of the dense models, seconds
    readings_per_message: int  # timestamps bundled per json/senml/ocpp message
    climates: dict[str, Climate]
    groups: tuple[DeviceGroup, ...]
    faults: dict[str, float]  # fault kind -> rate (see simulators.faults)
    registry: Registry

    @property
    def start_ms(self) -> int:
        """First reading time, UTC ms."""
        return self.anchor_end_ms - self.days * DAY_MS

    @property
    def intervention_ms(self) -> int:
        """When the intervention begins, UTC ms."""
        return self.start_ms + self.intervention_day * DAY_MS

    @property
    def device_count(self) -> int:
        """How many devices the scenario simulates."""
        return sum(g.count for g in self.groups)


def scenario_path(name_or_path: str) -> Path:
    """A packaged scenario by name (``demo``, ``city-scale``) or a file path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    packaged = resources.files("simulators.scenarios").joinpath(f"{name_or_path}.toml")
    return Path(str(packaged))


def load_scenario(name_or_path: str, registry: Registry | None = None) -> Scenario:
    """Load and check a scenario; raises ScenarioError naming the problem."""
    path = scenario_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        msg = f"scenario {name_or_path!r} not found (looked at {path})"
        raise ScenarioError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"scenario {path} is not valid TOML: {exc}"
        raise ScenarioError(msg) from exc
    registry = registry or load_registry()
    try:
        return _build(data, registry)
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"scenario {path}: {exc!r}"
        raise ScenarioError(msg) from exc


def with_overrides(scn: Scenario, *, seed: int | None = None, faults: bool = True) -> Scenario:
    """A copy with another seed and/or with every fault rate set to zero."""
    out = scn
    if seed is not None:
        out = dataclasses.replace(out, seed=seed)
    if not faults:
        out = dataclasses.replace(out, faults=dict.fromkeys(out.faults, 0.0))
    return out


def end_at_now(scn: Scenario, now_ms: int | None = None) -> Scenario:
    """Move the period so it ends at the last whole step before now (for live demos)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    step_ms = scn.step_s * 1000
    return dataclasses.replace(scn, anchor_end_ms=now_ms - now_ms % step_ms)


def first_days(scn: Scenario, days: int) -> Scenario:
    """The scenario cut to its first ``days`` days (same devices; the intervention keeps its share)."""
    if not 0 < days <= scn.days:
        msg = f"days must be between 1 and {scn.days}, not {days}"
        raise ScenarioError(msg)
    if days == scn.days:
        return scn
    return dataclasses.replace(
        scn,
        anchor_end_ms=scn.start_ms + days * DAY_MS,
        days=days,
        intervention_day=max(1, days * scn.intervention_day // scn.days),
    )


def readings_upper_bound(scn: Scenario) -> int:
    """At most this many readings (two metrics per device per step): guards in-memory runs."""
    return 2 * scn.device_count * scn.days * 86_400 // scn.step_s


def _build(data: dict[str, Any], registry: Registry) -> Scenario:
    head = data["scenario"]
    anchor = datetime.fromisoformat(head["anchor_end"].replace("Z", "+00:00"))
    if anchor.tzinfo is None:
        msg = "anchor_end must carry a time zone (use ...Z)"
        raise ValueError(msg)
    climates = {c["city"]: Climate(**c) for c in data["climate"]}
    groups = tuple(_group(g, registry) for g in data["devices"])
    for g in groups:
        city = registry.pilots[g.tenant].city
        if city not in climates:
            msg = f"no [[climate]] for city {city} of pilot {g.tenant}"
            raise ValueError(msg)
    days, iday = int(head["days"]), int(head["intervention_day"])
    if not 0 < iday < days:
        msg = f"intervention_day {iday} must fall inside the {days} simulated days"
        raise ValueError(msg)
    step_s = int(head.get("step_s", 900))
    if 86_400 % step_s:
        msg = f"step_s {step_s} must divide a day"
        raise ValueError(msg)
    return Scenario(
        name=str(head["name"]),
        seed=int(head.get("seed", 0)),
        anchor_end_ms=int(anchor.timestamp() * 1000),
        days=days,
        intervention_day=iday,
        step_s=step_s,
        readings_per_message=int(head.get("readings_per_message", 4)),
        climates=climates,
        groups=groups,
        faults={str(k): float(v) for k, v in data.get("faults", {}).items()},
        registry=registry,
    )


def _group(g: dict[str, Any], registry: Registry) -> DeviceGroup:
    from simulators.devices import MODELS

    tenant = g["tenant"]
    if tenant not in registry.pilots:
        msg = f"device group names unknown pilot {tenant!r}"
        raise ValueError(msg)
    if g["model"] not in MODELS:
        msg = f"unknown device model {g['model']!r} (known: {sorted(MODELS)})"
        raise ValueError(msg)
    if g["format"] not in FORMATS:
        msg = f"unknown format {g['format']!r} (known: {FORMATS})"
        raise ValueError(msg)
    count = int(g["count"])
    if count < 1:
        msg = f"device group {tenant}/{g['model']} needs count >= 1"
        raise ValueError(msg)
    return DeviceGroup(
        tenant=tenant,
        model=g["model"],
        count=count,
        fmt=g["format"],
        unit=g.get("unit", ""),
        effect=float(g.get("effect", 0.0)),
        id_prefix=g.get("id_prefix", g["model"].replace("_", "")[:6]),
        application=g.get("application", ""),
        params=dict(g.get("params", {})),
    )
