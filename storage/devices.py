"""Register devices and their metrics (kind, unit, register maximum for rollover).

Upserts from columns, so a deployment or a simulator scenario can (re-)declare its devices in one
call; a device's metrics are replaced by the ones given for it.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
import psycopg

from storage.frames import Columnar, conform

DEVICES: dict[str, pl.DataType] = {
    "id": pl.String(),
    "tenant": pl.String(),
    "kind": pl.String(),  # electricity_meter, bike_counter, weather_station...
    "latitude": pl.Float64(),  # may be null
    "longitude": pl.Float64(),  # may be null
    "location": pl.String(),
    "installed_on": pl.Date(),  # may be null
    "removed_on": pl.Date(),  # may be null
}
DEVICE_DEFAULTS: dict[str, object] = {
    "latitude": None,
    "longitude": None,
    "location": "",
    "installed_on": None,
    "removed_on": None,
}
DEVICE_METRICS: dict[str, pl.DataType] = {
    "device_id": pl.String(),
    "metric": pl.String(),
    "unit": pl.String(),  # canonical unit
    "kind": pl.String(),  # counter | gauge | delta
    "register_max": pl.Float64(),  # counters: rollover value; may be null
}
_NULLABLE = ("latitude", "longitude", "installed_on", "removed_on", "register_max")

_UPSERT_DEVICES = """
INSERT INTO devices (id, tenant, kind, latitude, longitude, location, installed_on, removed_on)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::text[],
                     %s::date[], %s::date[])
ON CONFLICT (id) DO UPDATE SET tenant = EXCLUDED.tenant, kind = EXCLUDED.kind,
    latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, location = EXCLUDED.location,
    installed_on = EXCLUDED.installed_on, removed_on = EXCLUDED.removed_on
"""
_INSERT_METRICS = """
INSERT INTO device_metrics (device_id, metric, unit, kind, register_max)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[])
"""


def upsert_devices(
    conn: psycopg.Connection, devices: Columnar, metrics: Columnar | None = None
) -> tuple[int, int]:
    """Insert or update ``devices`` (columns of DEVICES) and replace the metrics of the devices
    named in ``metrics`` (columns of DEVICE_METRICS), in one transaction. Returns the counts."""
    dev = _conform("devices", devices, DEVICES, DEVICE_DEFAULTS)
    met = (
        _conform("device metrics", metrics, DEVICE_METRICS, {"register_max": None})
        if (metrics is not None)
        else None
    )
    with conn.transaction():
        if dev.height:
            conn.execute(_UPSERT_DEVICES, [dev[c].to_list() for c in DEVICES])
        if met is not None and met.height:
            conn.execute(
                "DELETE FROM device_metrics WHERE device_id = ANY(%s::text[])",
                (met["device_id"].unique().to_list(),),
            )
            conn.execute(_INSERT_METRICS, [met[c].to_list() for c in DEVICE_METRICS])
    return dev.height, 0 if met is None else met.height


def _conform(
    name: str, data: Columnar, schema: dict[str, pl.DataType], defaults: Mapping[str, object]
) -> pl.DataFrame:
    """:func:`storage.frames.conform` for columns of which some may be null."""
    required = {c: t for c, t in schema.items() if c not in _NULLABLE}
    df = data if isinstance(data, pl.DataFrame) else pl.DataFrame(dict(data))
    for col, value in defaults.items():
        if col not in df.columns:
            df = df.with_columns(pl.lit(value, dtype=schema[col]).alias(col))
    checked = conform(name, df.select(list(required)), required)
    optional = df.select([pl.col(c).cast(schema[c]) for c in schema if c in _NULLABLE])
    return pl.concat([checked, optional], how="horizontal").select(list(schema))
