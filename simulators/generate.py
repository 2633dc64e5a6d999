"""Run a scenario's device models: blocks of numpy readings, then one polars frame of readings.

Large device groups are generated in chunks of :data:`CHUNK_DEVICES` devices, each with its own
generator seeded from (seed, group, chunk), so memory stays bounded and the output does not depend on
how the work is split between runs.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from pilotstream.vocab import METRICS
from simulators.clock import LocalTime, TimeGrid
from simulators.devices import MODELS, Block, CityWeather, ModelContext, city_weather
from simulators.formats import send_unit
from simulators.scenario import DeviceGroup, Scenario

CHUNK_DEVICES = 250

READING_SCHEMA = {
    "tenant": pl.String,
    "city": pl.String,
    "device_id": pl.String,
    "fmt": pl.String,
    "application": pl.String,
    "metric": pl.String,
    "kind": pl.String,
    "unit": pl.String,  # unit the device sends in; ``value`` stays canonical
    "ts_ms": pl.Int64,
    "value": pl.Float64,
}


@dataclass(frozen=True, slots=True)
class GroupChunk:
    """The blocks of one chunk of a device group."""

    group: DeviceGroup
    city: str  # City.id
    blocks: list[Block]


def device_ids(g: DeviceGroup, start: int, stop: int) -> tuple[str, ...]:
    """Ids of devices ``start..stop`` of a group; ChirpStack devices are named by a DevEUI."""
    if g.fmt == "chirpstack":
        base = zlib.crc32(f"{g.tenant}/{g.id_prefix}".encode())
        return tuple(f"{base:08x}{i:08x}" for i in range(start, stop))
    width = max(3, len(str(g.count - 1)))
    return tuple(f"{g.tenant}-{g.id_prefix}-{i:0{width}d}" for i in range(start, stop))


def generate_chunks(scn: Scenario, *, chunk: int = CHUNK_DEVICES) -> Iterator[GroupChunk]:
    """Every chunk of every device group, in scenario order (deterministic for a seed)."""
    grid = TimeGrid.of(scn)
    ts = grid.ts_ms
    cities = sorted(scn.climates)
    weather: dict[str, CityWeather] = {}
    local: dict[str, LocalTime] = {}
    for gi, g in enumerate(scn.groups):
        city = scn.registry.pilots[g.tenant].city
        if city not in weather:
            rng = np.random.default_rng([scn.seed, 10_000 + cities.index(city)])
            weather[city] = city_weather(rng, grid, scn.climates[city])
            local[city] = LocalTime.of(ts, scn.registry.cities[city].tz)
        clim = scn.climates[city]
        for ci, start in enumerate(range(0, g.count, chunk)):
            ids = device_ids(g, start, min(start + chunk, g.count))
            ctx = ModelContext(
                grid=grid,
                local=local[city],
                weather=weather[city],
                rng=np.random.default_rng([scn.seed, gi, ci]),
                lat=clim.lat,
                lon=clim.lon,
            )
            yield GroupChunk(group=g, city=city, blocks=MODELS[g.model](ctx, g, ids))


def block_frame(chunk: GroupChunk, block: Block) -> pl.DataFrame:
    """One block as a readings frame (columns of :data:`READING_SCHEMA`), sorted by device and time."""
    g = chunk.group
    n = len(block)
    ids = pl.Series("device_id", block.device_ids, dtype=pl.String)
    spec = METRICS[block.metric]
    frame = pl.DataFrame(
        {
            "tenant": pl.repeat(g.tenant, n, eager=True, dtype=pl.String),
            "city": pl.repeat(chunk.city, n, eager=True, dtype=pl.String),
            "device_id": ids.gather(pl.Series(block.device, dtype=pl.UInt32)),
            "fmt": pl.repeat(g.fmt, n, eager=True, dtype=pl.String),
            "application": pl.repeat(g.application, n, eager=True, dtype=pl.String),
            "metric": pl.repeat(block.metric, n, eager=True, dtype=pl.String),
            "kind": pl.repeat(spec.kind, n, eager=True, dtype=pl.String),
            "unit": pl.repeat(
                send_unit(g.fmt, block.metric, g.unit), n, eager=True, dtype=pl.String
            ),
            "ts_ms": pl.Series(block.ts_ms, dtype=pl.Int64),
            "value": pl.Series(block.value, dtype=pl.Float64),
        },
        schema=READING_SCHEMA,
    )
    return frame


def readings_frame(chunks: list[GroupChunk]) -> pl.DataFrame:
    """All readings of a run, sorted by (device, metric, time): the clean feed."""
    frames = [block_frame(c, b) for c in chunks for b in c.blocks]
    if not frames:
        return pl.DataFrame(schema=READING_SCHEMA)
    return pl.concat(frames).sort(["device_id", "metric", "ts_ms"], maintain_order=True)


def trips_frame(chunks: list[GroupChunk]) -> pl.DataFrame:
    """Every simulated shared trip: tenant, device_id, mode, start_ms, end_ms, km (clean, no faults)."""
    frames = [
        pl.DataFrame(
            {
                "tenant": c.group.tenant,
                "device_id": pl.Series(b.device_ids).gather(pl.Series(b.device, dtype=pl.UInt32)),
                "mode": b.metric.rsplit(".", 1)[1],
                "start_ms": b.start_ms,
                "end_ms": b.ts_ms,
                "km": b.value,
            }
        )
        for c in chunks
        for b in c.blocks
        if b.start_ms is not None
    ]
    schema = {
        "tenant": pl.String,
        "device_id": pl.String,
        "mode": pl.String,
        "start_ms": pl.Int64,
        "end_ms": pl.Int64,
        "km": pl.Float64,
    }
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames).cast(schema).sort(["device_id", "start_ms"])  # type: ignore[arg-type]


def count_readings(chunks: Iterator[GroupChunk]) -> int:
    """Consume chunks and count their readings (the in-memory generation benchmark)."""
    return sum(len(b) for c in chunks for b in c.blocks)
