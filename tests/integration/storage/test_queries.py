"""Each dashboard query returns the expected figures on a small hand-built dataset."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from storage import queries
from storage.offsets import claim_partitions
from storage.writer import Writer

from .data import ms, readings, rejections, utc, windows

pytestmark = pytest.mark.integration


async def _load(aconn: psycopg.AsyncConnection) -> None:
    gen = (await claim_partitions(aconn, group="g", topic="t", partitions=[0])).generation
    # Paris is UTC+1 on 10-11 March 2026, Helsinki UTC+2.
    wins = pl.concat(
        [
            windows(
                tenant="paris-energy-1",
                device="p1",
                factor=100.0,
                starts_ms=[
                    ms(utc(2026, 3, 10, 22)),
                    ms(utc(2026, 3, 10, 23)),
                    ms(utc(2026, 3, 11, 10)),
                ],
                actual=[5.0, 5.0, 5.0],
                baseline=[6.0, 7.0, 8.0],
            ),
            windows(
                tenant="paris-energy-1",
                device="p1b",
                factor=100.0,
                starts_ms=[ms(utc(2026, 3, 11, 10))],
                actual=[1.0],
                baseline=[1.0],
            ),
            # a 15-minute window of the same data: never added to the hourly figures
            windows(
                tenant="paris-energy-1",
                device="p1",
                factor=100.0,
                width_s=900,
                starts_ms=[ms(utc(2026, 3, 10, 22))],
                actual=[1.0],
                baseline=[9.0],
            ),
            windows(
                tenant="paris-mobility-1",
                device="p2",
                factor=250.0,
                metric="trip.distance.ebike",
                starts_ms=[ms(utc(2026, 3, 11, 10))],
                actual=[0.0],
                baseline=[4.0],
            ),
            windows(
                tenant="helsinki-energy-1",
                device="h1",
                factor=1000.0,
                starts_ms=[ms(utc(2026, 3, 10, 22))],
                actual=[1.0],
                baseline=[2.0],
            ),
        ]
    )
    start = ms(utc(2026, 3, 11, 8))
    reads = pl.concat(
        [
            readings(tenant="paris-energy-1", device="p1", start_ms=start, n=10),
            readings(
                tenant="paris-energy-1",
                device="p1",
                start_ms=start + 40 * 60_000,
                n=5,
                value0=100.0,
            ),
            readings(tenant="paris-mobility-1", device="p2", start_ms=start, n=3),
        ]
    )
    rej = pl.concat(
        [
            rejections(
                tenant="paris-energy-1",
                device="p1",
                reasons=["bad_json", "bad_json", "non_finite"],
                at_ms=start,
            ),
            rejections(tenant="paris-energy-1", device="", reasons=["unknown_device"], at_ms=start),
        ]
    )
    async with Writer(dsn=f"{aconn.info.dsn} password={aconn.info.password or ''}") as w:
        await w.commit_batch(
            readings=reads,
            windows=wins,
            rejections=rej,
            offsets={("t", 0): 100},
            group="g",
            generation=gen,
        )
    await aconn.execute(
        "INSERT INTO devices (id, tenant, kind) VALUES ('p1', 'paris-energy-1', 'meter'), "
        "('p9', 'paris-energy-1', 'meter')"
    )


async def test_avoided_per_pilot_and_city_per_local_day(aconn: psycopg.AsyncConnection) -> None:
    await _load(aconn)
    d10, d11 = date(2026, 3, 10), date(2026, 3, 11)
    by_pilot = await queries.avoided_per_day(aconn, by="pilot", start=d10, end=date(2026, 3, 12))
    expected = pl.DataFrame(
        {
            "tenant": ["helsinki-energy-1", "paris-energy-1", "paris-energy-1", "paris-mobility-1"],
            "day": [d11, d10, d11, d11],
            "avoided_tco2e": [1.0, 0.1, 0.5, 1.0],
            "cumulative_tco2e": [1.0, 0.1, 0.6, 1.0],
        }
    )
    assert_frame_equal(by_pilot, expected)
    by_city = await queries.avoided_per_day(aconn, by="city", start=d10, end=date(2026, 3, 12))
    assert_frame_equal(
        by_city,
        pl.DataFrame(
            {
                "city": ["helsinki", "paris", "paris"],
                "day": [d11, d10, d11],
                "avoided_tco2e": [1.0, 0.1, 1.5],
                "cumulative_tco2e": [1.0, 0.1, 1.6],
            }
        ),
    )
    # cumulative counts from the first stored day, even when the range starts later
    later = await queries.avoided_per_day(
        aconn, by="pilot", start=d11, end=date(2026, 3, 12), keys=["paris-energy-1"]
    )
    assert later.rows() == [("paris-energy-1", d11, 0.5, 0.6)]
    quarter = await queries.avoided_per_day(aconn, by="pilot", start=d10, end=d11, width_s=900)
    assert quarter.rows() == [("paris-energy-1", d10, 0.8, 0.8)]


async def test_pilot_role_gets_only_its_own_figures(
    db: str, aconn: psycopg.AsyncConnection
) -> None:
    await _load(aconn)
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        await conn.execute("SET ROLE pilot_paris_mobility_1")
        rows = await queries.avoided_per_day(
            conn, by="pilot", start=date(2026, 3, 1), end=date(2026, 4, 1), schema="tenant_api"
        )
        assert rows.rows() == [("paris-mobility-1", date(2026, 3, 11), 1.0, 1.0)]
        health = await queries.device_health(
            conn,
            tenant="paris-energy-1",
            since=utc(2026, 3, 1),
            until=utc(2026, 4, 1),
            gap_s=300,
            schema="tenant_api",
        )
        assert health.height == 0  # another pilot's devices are invisible


async def test_baseline_vs_actual_for_device_and_pilot(aconn: psycopg.AsyncConnection) -> None:
    await _load(aconn)
    args = {"metric": "energy.active.import", "start": utc(2026, 3, 10), "end": utc(2026, 3, 12)}
    device = await queries.baseline_vs_actual(aconn, device_id="p1", **args)  # type: ignore[arg-type]
    assert device.select("actual", "baseline", "delta", "devices").rows() == [
        (5.0, 6.0, 1.0, 1),
        (5.0, 7.0, 2.0, 1),
        (5.0, 8.0, 3.0, 1),
    ]
    assert device["bucket_start"].to_list()[0] == utc(2026, 3, 10, 22)
    pilot = await queries.baseline_vs_actual(aconn, tenant="paris-energy-1", **args)  # type: ignore[arg-type]
    assert pilot.select("actual", "baseline", "avoided_co2e_kg", "devices").rows() == [
        (5.0, 6.0, 100.0, 1),
        (5.0, 7.0, 200.0, 1),
        (6.0, 9.0, 300.0, 2),
    ]
    with pytest.raises(ValueError, match="exactly one"):
        await queries.baseline_vs_actual(aconn, **args)  # type: ignore[arg-type]


async def test_device_health(aconn: psycopg.AsyncConnection) -> None:
    await _load(aconn)
    health = await queries.device_health(
        aconn, tenant="paris-energy-1", since=utc(2026, 3, 11), until=utc(2026, 3, 12), gap_s=300
    )
    assert health["device_id"].to_list() == ["", "p1", "p9"]
    p1 = health.row(1, named=True)
    assert p1["last_seen"] == utc(2026, 3, 11, 8, 44)
    assert (p1["readings"], p1["gaps"], p1["max_step_s"], p1["rejected"]) == (15, 1, 1860.0, 3)
    assert json.loads(p1["by_reason"]) == {"bad_json": 2, "non_finite": 1}
    p9 = health.row(2, named=True)
    assert (p9["last_seen"], p9["readings"], p9["rejected"]) == (None, 0, 0)
    assert json.loads(health.row(0, named=True)["by_reason"]) == {"unknown_device": 1}


async def test_latest_readings_and_consumer_lag(aconn: psycopg.AsyncConnection) -> None:
    await _load(aconn)
    latest = await queries.latest_readings(aconn, since=utc(2026, 3, 11))
    assert latest.select("device_id", "ts", "value").rows() == [
        ("p1", utc(2026, 3, 11, 8, 44), 104.0),
        ("p2", utc(2026, 3, 11, 8, 2), 2.0),
    ]
    only = await queries.latest_readings(aconn, since=utc(2026, 3, 11), device_ids=["p2"])
    assert only["device_id"].to_list() == ["p2"]
    lag = await queries.consumer_lag(aconn, group="g", end_offsets={("t", 0): 150, ("t", 1): 20})
    assert lag.rows() == [("t", 0, 100, 150, 50), ("t", 1, None, 20, 20)]
