"""The registry of cities, pilots and LoRaWAN applications, loaded from a TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pilotstream.errors import SettingsError


@dataclass(frozen=True, slots=True)
class City:
    """A city hosting pilots."""

    id: str  # short id, e.g. "paris"
    name: str  # display name
    country: str  # ISO 3166-1 alpha-2, selects the grid factor
    tz: str  # IANA time zone; daily figures use its local midnight
    lat: float | None = None  # city centre, degrees north (daylight baselines need it)
    lon: float | None = None  # city centre, degrees east


@dataclass(frozen=True, slots=True)
class Pilot:
    """A pilot project; its tenant id is also its MQTT user and topic prefix."""

    tenant: str  # tenant id
    city: str  # City.id
    lot: str  # energy | mobility
    description: str
    params: dict[str, object]  # method parameters: replaced_mode_shares, car_trip_km, heat_scope...


@dataclass(frozen=True, slots=True)
class Registry:
    """Everything the pipeline knows about who may send what."""

    cities: dict[str, City]
    pilots: dict[str, Pilot]
    lorawan: dict[tuple[str, str], str]  # (network, application) -> tenant

    def city_of(self, tenant: str) -> City:
        """The city of a pilot; KeyError for an unknown tenant."""
        return self.cities[self.pilots[tenant].city]


def load_registry(path: Path | None = None) -> Registry:
    """Load and check a registry file (the packaged default when ``path`` is None)."""
    if path is None:
        text = resources.files("pilotstream").joinpath("registry.toml").read_text("utf-8")
        where = "packaged registry.toml"
    else:
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError as exc:
            msg = f"registry file {path} does not exist"
            raise SettingsError(msg) from exc
        where = str(path)
    try:
        data = tomllib.loads(text)
        cities = {
            c["id"]: City(c["id"], c["name"], c["country"], c["tz"], c.get("lat"), c.get("lon"))
            for c in data["cities"]
        }
        pilots = {
            p["tenant"]: Pilot(
                p["tenant"],
                p["city"],
                p["lot"],
                p.get("description", ""),
                {k: v for k, v in p.items() if k not in ("tenant", "city", "lot", "description")},
            )
            for p in data["pilots"]
        }
        lorawan = {(a["network"], a["application"]): a["tenant"] for a in data.get("lorawan", [])}
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        msg = f"{where}: malformed registry ({exc!r})"
        raise SettingsError(msg) from exc
    for p in pilots.values():
        if p.city not in cities:
            msg = f"{where}: pilot {p.tenant} names unknown city {p.city}"
            raise SettingsError(msg)
        if p.lot not in ("energy", "mobility"):
            msg = f"{where}: pilot {p.tenant} has lot {p.lot!r}, expected energy or mobility"
            raise SettingsError(msg)
    for key, tenant in lorawan.items():
        if tenant not in pilots:
            msg = f"{where}: LoRaWAN application {key} names unknown pilot {tenant}"
            raise SettingsError(msg)
    return Registry(cities=cities, pilots=pilots, lorawan=lorawan)
