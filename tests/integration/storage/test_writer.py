"""Writer semantics on the real database: duplicates ignored, windows revised only on change,
the daily rollup in the city's local day, rejections, refusal of NUL and non-finite values."""

from __future__ import annotations

import asyncio
import math
from datetime import date

import polars as pl
import psycopg
import pytest

from storage.errors import InvalidBatch
from storage.offsets import claim_partitions, load_offsets
from storage.writer import Writer

from .data import HOUR_MS, ms, readings, rejections, utc, windows

pytestmark = pytest.mark.integration

T0 = ms(utc(2026, 3, 10, 12, 0))


async def _gen(conn: psycopg.AsyncConnection, group: str = "g") -> int:
    return (await claim_partitions(conn, group=group, topic="t", partitions=[0, 1])).generation


@pytest.mark.parametrize("optimistic", [True, False])
async def test_duplicate_readings_are_counted_and_ignored(
    aconn: psycopg.AsyncConnection, optimistic: bool
) -> None:
    gen = await _gen(aconn)
    batch = readings(tenant="paris-energy-1", device="m1", start_ms=T0, n=100)
    async with Writer(dsn=aconn.info.dsn + " password=" + _pw(aconn), optimistic=optimistic) as w:
        first = await w.commit_batch(
            readings=batch, offsets={("t", 0): 100}, group="g", generation=gen
        )
        assert (first.readings_new, first.readings_duplicate) == (100, 0)
        # redelivery: 50 old readings (changed values must not overwrite) and 50 new ones
        again = pl.concat(
            [
                batch.slice(50, 50).with_columns(value=pl.lit(-1.0)),
                readings(tenant="paris-energy-1", device="m1", start_ms=T0 + 100 * 60_000, n=50),
            ]
        )
        second = await w.commit_batch(
            readings=again, offsets={("t", 0): 150}, group="g", generation=gen
        )
        assert (second.readings_new, second.readings_duplicate) == (50, 50)
        # a key twice in the same batch counts once
        twice = readings(tenant="paris-energy-1", device="m2", start_ms=T0, n=3)
        third = await w.commit_batch(
            readings=pl.concat([twice, twice]), offsets={("t", 0): 160}, group="g", generation=gen
        )
        assert (third.readings_new, third.readings_duplicate) == (3, 3)
    cur = await aconn.execute(
        "SELECT count(*), count(*) FILTER (WHERE value < 0), sum(value) FROM readings "
        "WHERE device_id = 'm1'"
    )
    assert await cur.fetchone() == (150, 0, sum(range(100)) + sum(range(50)))
    assert await load_offsets(aconn, "g", "t") == {0: 160}


async def test_window_revision_moves_only_when_values_change(
    aconn: psycopg.AsyncConnection,
) -> None:
    gen = await _gen(aconn)
    starts = [T0, T0 + HOUR_MS]
    win = windows(
        tenant="paris-energy-1",
        device="m1",
        starts_ms=starts,
        actual=[1.0, 2.0],
        baseline=[3.0, 5.0],
    )
    async with Writer(dsn=_dsn(aconn)) as w:
        r1 = await w.commit_batch(
            readings=None, windows=win, offsets={("t", 0): 1}, group="g", generation=gen
        )
        assert (r1.windows_new, r1.windows_revised, r1.windows_unchanged) == (2, 0, 0)
        assert r1.windows_changed["revision"].to_list() == [1, 1]
        cur = await aconn.execute("SELECT max(updated_at) FROM window_results")
        (stamp1,) = await cur.fetchone()  # type: ignore[misc]
        r2 = await w.commit_batch(
            readings=None, windows=win, offsets={("t", 0): 2}, group="g", generation=gen
        )
        assert (r2.windows_new, r2.windows_revised, r2.windows_unchanged) == (0, 0, 2)
        cur = await aconn.execute("SELECT max(updated_at), max(revision) FROM window_results")
        assert await cur.fetchone() == (stamp1, 1)
        late = windows(
            tenant="paris-energy-1",
            device="m1",
            starts_ms=starts,
            actual=[1.0, 2.5],
            baseline=[3.0, 5.0],
        )
        r3 = await w.commit_batch(
            readings=None, windows=late, offsets={("t", 0): 3}, group="g", generation=gen
        )
        assert (r3.windows_new, r3.windows_revised, r3.windows_unchanged) == (0, 1, 1)
        assert r3.windows_changed.select("bucket_start_ms", "revision").rows() == [
            (T0 + HOUR_MS, 2)
        ]
    cur = await aconn.execute(
        "SELECT revision, actual, updated_at > %s FROM window_results ORDER BY bucket_start",
        (stamp1,),
    )
    assert await cur.fetchall() == [(1, 1.0, False), (2, 2.5, True)]


async def test_daily_rollup_uses_the_city_local_day(aconn: psycopg.AsyncConnection) -> None:
    gen = await _gen(aconn)
    # Helsinki is UTC+2 in March: 22:00 UTC on the 10th is midnight of the 11th locally.
    starts = [ms(utc(2026, 3, 10, 20, 0)), ms(utc(2026, 3, 10, 21, 0)), ms(utc(2026, 3, 10, 22, 0))]
    win = windows(
        tenant="helsinki-energy-1",
        device="h1",
        starts_ms=starts,
        actual=[1, 1, 1],
        baseline=[2, 3, 4],
        factor=0.5,
    )
    async with Writer(dsn=_dsn(aconn)) as w:
        await w.commit_batch(readings=None, windows=win, offsets={}, group="g", generation=gen)
        cur = await aconn.execute(
            "SELECT day, windows, delta, avoided_co2e_kg FROM results_daily ORDER BY day"
        )
        assert await cur.fetchall() == [
            (date(2026, 3, 10), 2, 3.0, 1.5),
            (date(2026, 3, 11), 1, 3.0, 1.5),
        ]
        # a restated window updates its day's rollup
        fix = win.slice(2, 1).with_columns(
            actual=pl.lit(4.0), delta=pl.lit(0.0), avoided_co2e_kg=pl.lit(0.0)
        )
        await w.commit_batch(readings=None, windows=fix, offsets={}, group="g", generation=gen)
    cur = await aconn.execute(
        "SELECT day, windows, delta, avoided_co2e_kg FROM results_daily ORDER BY day"
    )
    assert await cur.fetchall() == [
        (date(2026, 3, 10), 2, 3.0, 1.5),
        (date(2026, 3, 11), 1, 0.0, 0.0),
    ]


async def test_rejections_are_stored_with_their_bytes(aconn: psycopg.AsyncConnection) -> None:
    gen = await _gen(aconn)
    rej = rejections(
        tenant="paris-energy-1", device="m1", reasons=["bad_json", "non_finite"], at_ms=T0
    )
    async with Writer(dsn=_dsn(aconn)) as w:
        res = await w.commit_batch(
            readings=None, rejections=rej, offsets={("t", 1): 7}, group="g", generation=gen
        )
    assert (res.rejections, res.offsets) == (2, 1)
    cur = await aconn.execute("SELECT reason, payload, received_at FROM rejections ORDER BY reason")
    assert await cur.fetchall() == [
        ("bad_json", b"{\x00bad", utc(2026, 3, 10, 12, 0)),
        ("non_finite", b"{\x00bad", utc(2026, 3, 10, 12, 0)),
    ]


@pytest.mark.parametrize(
    ("column", "bad", "match"),
    [
        ("device_id", "m\x001", "NUL byte"),
        ("value", math.nan, "non-finite"),
        ("value", math.inf, "non-finite"),
        ("value", None, "null"),
    ],
)
async def test_bad_values_are_refused_before_the_database(
    aconn: psycopg.AsyncConnection, column: str, bad: object, match: str
) -> None:
    gen = await _gen(aconn)
    batch = readings(tenant="paris-energy-1", device="m1", start_ms=T0, n=5)
    batch = batch.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit(bad))
        .otherwise(pl.col(column))
        .alias(column)
    )
    async with Writer(dsn=_dsn(aconn)) as w:
        with pytest.raises(InvalidBatch, match=match):
            await w.commit_batch(readings=batch, offsets={("t", 0): 5}, group="g", generation=gen)
    cur = await aconn.execute("SELECT count(*) FROM readings")
    assert await cur.fetchone() == (0,)
    assert await load_offsets(aconn, "g", "t") == {}


def _pw(conn: psycopg.AsyncConnection) -> str:
    return conn.info.password or ""


def _dsn(conn: psycopg.AsyncConnection) -> str:
    """The DSN of an open connection, with its password (info.dsn leaves it out)."""
    return f"{conn.info.dsn} password={_pw(conn)}"


async def test_multi_chunk_batch_with_redelivery(aconn: psycopg.AsyncConnection) -> None:
    """Batches larger than one streamed chunk, and the fallback reusing the encoded chunks."""
    gen = await _gen(aconn)
    batch = readings(tenant="paris-energy-1", device="big", start_ms=T0, n=6_000, step_ms=1_000)
    more = readings(tenant="paris-energy-1", device="big", start_ms=T0 + 6_000_000, n=10)
    async with Writer(dsn=_dsn(aconn)) as w:
        first = await w.commit_batch(readings=batch, offsets={}, group="g", generation=gen)
        again = await w.commit_batch(
            readings=pl.concat([batch, more]), offsets={}, group="g", generation=gen
        )
    assert (first.readings_new, again.readings_new, again.readings_duplicate) == (6_000, 10, 6_000)
    cur = await aconn.execute("SELECT count(*), sum(seq) FROM readings WHERE device_id = 'big'")
    assert await cur.fetchone() == (6_010, sum(range(6_000)) + sum(range(10)))


async def test_two_writers_racing_on_the_same_readings(aconn: psycopg.AsyncConnection) -> None:
    """Old and new owner briefly write the same readings after a rebalance: each reading is
    stored once, counted new by exactly one writer, and neither fails."""
    gen = await _gen(aconn)
    batch = readings(tenant="paris-energy-1", device="race", start_ms=T0, n=3_000)
    async with Writer(dsn=_dsn(aconn)) as a, Writer(dsn=_dsn(aconn)) as b:
        ra, rb = await asyncio.gather(
            a.commit_batch(readings=batch, offsets={("t", 0): 1}, group="g", generation=gen),
            b.commit_batch(readings=batch, offsets={("t", 1): 1}, group="g", generation=gen),
        )
    assert sorted([ra.readings_new, rb.readings_new]) == [0, 3_000]
    assert ra.readings_new + ra.readings_duplicate == rb.readings_new + rb.readings_duplicate
    cur = await aconn.execute("SELECT count(*) FROM readings WHERE device_id = 'race'")
    assert await cur.fetchone() == (3_000,)
