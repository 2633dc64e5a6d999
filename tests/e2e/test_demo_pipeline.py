"""The demo scenario through the whole pipeline on the real stack (Mosquitto, gateway, Kafka,
processors, TimescaleDB), with the simulator's faults on."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from deploy.local.demo import DemoResult
from pilotstream.settings import BaseSettings

pytestmark = pytest.mark.e2e


def _devices(live: DemoResult) -> list[str]:
    return (
        pl.read_parquet(live.out_dir / "readings.parquet", columns=["device_id"])["device_id"]
        .unique()
        .to_list()
    )


def test_malformed_messages_become_dead_letters_with_their_reason(live: DemoResult) -> None:
    faults = dict(live.faults.iter_rows())
    rejected = dict(live.rejections.iter_rows())
    assert rejected.get("bad_json", 0) == faults["broken_json"]
    assert rejected.get("too_deep", 0) == faults["deep_nesting"]
    assert rejected.get("too_large", 0) == faults["oversized"]
    # NaN / Infinity numbers are non_finite; as OCPP strings or wrong JSON types they fail the schema
    typed = sum(rejected.get(r, 0) for r in ("non_finite", "bad_schema", "bad_senml"))
    assert typed == faults["non_finite"] + faults["wrong_type"]


def test_the_broker_refuses_publishing_under_another_pilot(live: DemoResult) -> None:
    assert (
        live.refused_by_broker
        == live.faults.filter(pl.col("kind") == "wrong_tenant")["count"].sum()
    )
    assert live.published > 40_000


def test_stored_readings_are_the_sent_ones_less_the_refused(
    live: DemoResult, stack: BaseSettings
) -> None:
    # readings of refused messages, duplicates and too-late ones are not stored; nothing is invented
    with psycopg.connect(live.run.dsn(stack)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM readings WHERE device_id = ANY(%s)", (_devices(live),)
        ).fetchone()
    assert row is not None
    assert 0.95 * live.readings_sent < row[0] <= live.readings_sent


def test_avoided_emissions_per_pilot_are_within_3_percent_of_the_truth(live: DemoResult) -> None:
    pilots = live.pilots.select("tenant", "truth_kg", "pipeline_kg", "diff_kg_pct")
    assert pilots.height == 10  # every pilot of the scenario, each with a truth to compare
    off = pilots.filter(pl.col("diff_kg_pct").abs() > 3.0)
    assert off.is_empty(), f"pilots outside 3 % of the truth:\n{off}"
    energy = live.pilots.filter(pl.col("truth_kwh") != 0)
    assert energy.height == 5
    off_kwh = energy.filter(pl.col("diff_kwh_pct").abs() > 3.0)
    assert off_kwh.is_empty(), f"energy pilots outside their kWh bound:\n{off_kwh}"
