"""Retention drops only the chunks entirely older than the horizon."""

from __future__ import annotations

import time

import polars as pl
import psycopg
import pytest

from storage.errors import StorageError
from storage.offsets import claim_partitions
from storage.retention import drop_old_chunks
from storage.writer import Writer

from .data import readings, rejections, windows

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


async def test_retention_drops_only_chunks_older_than_horizon(
    db: str, aconn: psycopg.AsyncConnection
) -> None:
    now = int(time.time() * 1000)
    gen = (await claim_partitions(aconn, group="g", topic="t", partitions=[0])).generation
    ages = (10, 5, 1)  # days
    async with Writer(dsn=f"{aconn.info.dsn} password={aconn.info.password or ''}") as w:
        await w.commit_batch(
            readings=pl.concat(
                [
                    readings(tenant="paris-energy-1", device="r", start_ms=now - d * DAY_MS, n=4)
                    for d in ages
                ]
            ),
            windows=windows(
                tenant="paris-energy-1",
                device="r",
                starts_ms=[now - d * DAY_MS for d in ages],
                actual=[1, 1, 1],
                baseline=[2, 2, 2],
            ),
            rejections=pl.concat(
                [
                    rejections(
                        tenant="paris-energy-1",
                        device="r",
                        reasons=["bad_json"],
                        at_ms=now - d * DAY_MS,
                    )
                    for d in ages
                ]
            ),
            offsets={("t", 0): 1},
            group="g",
            generation=gen,
        )
    with psycopg.connect(db, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()
        assert before == (3,)
        dropped = drop_old_chunks(conn, horizon_days=3)
        assert len(dropped["readings"]) == 2
        assert len(dropped["rejections"]) >= 1  # 7-day chunks: the 10-day-old one at least
        left = conn.execute(
            "SELECT count(*), min(ts) > now() - interval '3 days' FROM readings"
        ).fetchone()
        assert left == (4, True)
        kept = conn.execute(
            "SELECT count(*) FROM rejections WHERE received_at > now() - interval '3 days'"
        ).fetchone()
        assert kept == (1,)
        assert conn.execute("SELECT count(*) FROM window_results").fetchone() == (3,)
        assert drop_old_chunks(conn, horizon_days=3) == {"readings": [], "rejections": []}
        with pytest.raises(StorageError, match="positive"):
            drop_old_chunks(conn, horizon_days=0)
        with pytest.raises(StorageError, match="not allowed"):
            drop_old_chunks(conn, horizon_days=3, tables=("window_results",))
