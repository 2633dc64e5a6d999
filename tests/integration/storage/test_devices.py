"""Registering devices and metrics; register maxima for the rollover kernel; health lists them."""

from __future__ import annotations

from datetime import date

import polars as pl
import psycopg
import pytest

from storage import queries
from storage.devices import upsert_devices
from storage.errors import InvalidBatch

from .data import utc

pytestmark = pytest.mark.integration


async def test_upsert_devices_and_register_maxima(db: str, aconn: psycopg.AsyncConnection) -> None:
    devices = {
        "id": ["m1", "m2", "c1"],
        "tenant": ["paris-energy-1", "paris-energy-1", "amsterdam-mobility-1"],
        "kind": ["electricity_meter", "heat_meter", "bike_counter"],
        "installed_on": [date(2025, 1, 1), None, None],
    }
    metrics = pl.DataFrame(
        {
            "device_id": ["m1", "m1", "m2"],
            "metric": ["energy.active.import", "power.active", "energy.heat"],
            "unit": ["kWh", "kW", "kWh"],
            "kind": ["counter", "gauge", "counter"],
            "register_max": [99_999.999, None, 1e6],
        }
    )
    with psycopg.connect(db) as conn:
        assert upsert_devices(conn, devices, metrics) == (3, 3)
        # re-declare: m2 is swapped to another kind, m1 keeps only its energy register
        changed = {"id": ["m2"], "tenant": ["paris-energy-1"], "kind": ["electricity_meter"]}
        assert upsert_devices(conn, changed, metrics.slice(0, 1)) == (1, 1)
        kinds = conn.execute("SELECT id, kind, installed_on FROM devices ORDER BY id").fetchall()
        assert kinds == [
            ("c1", "bike_counter", None),
            ("m1", "electricity_meter", date(2025, 1, 1)),
            ("m2", "electricity_meter", None),
        ]
        with pytest.raises(InvalidBatch, match="NUL"):
            upsert_devices(conn, {"id": ["x\x00"], "tenant": ["paris-energy-1"], "kind": ["m"]})
    maxima = await queries.register_maxima(aconn)
    assert maxima.rows() == [("m1", "energy.active.import", 99_999.999), ("m2", "energy.heat", 1e6)]
    assert (await queries.register_maxima(aconn, tenant="amsterdam-mobility-1")).height == 0
    health = await queries.device_health(
        aconn, tenant="paris-energy-1", since=utc(2026, 1, 1), until=utc(2026, 2, 1), gap_s=900
    )
    assert health["device_id"].to_list() == ["m1", "m2"]
    assert health["readings"].to_list() == [0, 0]
