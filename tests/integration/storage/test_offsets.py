"""Offsets commit with the results or not at all; a stale generation cannot commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest

from storage.errors import StaleGeneration, StorageError
from storage.offsets import claim_partitions, load_offsets
from storage.writer import Writer

from .data import HOUR_MS, ms, readings, rejections, utc, windows

pytestmark = pytest.mark.integration

T0 = ms(utc(2026, 4, 1, 8, 0))


def _dsn(conn: psycopg.AsyncConnection) -> str:
    return f"{conn.info.dsn} password={conn.info.password or ''}"


async def _count(conn: psycopg.AsyncConnection, table: str) -> int:
    cur = await conn.execute(f"SELECT count(*) FROM {table}")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_stale_generation_cannot_commit(aconn: psycopg.AsyncConnection) -> None:
    old = await claim_partitions(aconn, group="g", topic="t", partitions=[0, 1])
    assert old.offsets == {}
    async with Writer(dsn=_dsn(aconn)) as w:
        await w.commit_batch(
            readings=readings(tenant="paris-energy-1", device="a", start_ms=T0, n=10),
            offsets={("t", 0): 10, ("t", 1): 4},
            group="g",
            generation=old.generation,
        )
        # rebalance: a new consumer claims partition 1 and resumes from the stored offset
        async with Writer(dsn=_dsn(aconn)) as other:
            new = await other.claim(group="g", topic="t", partitions=[1])
            assert await other.load_offsets(group="g", topic="t") == {0: 10, 1: 4}
        assert new.generation > old.generation
        assert new.offsets == {1: 4}
        with pytest.raises(StaleGeneration, match="stale"):
            await w.commit_batch(
                readings=readings(tenant="paris-energy-1", device="a", start_ms=T0 + HOUR_MS, n=5),
                windows=windows(
                    tenant="paris-energy-1",
                    device="a",
                    starts_ms=[T0],
                    actual=[1.0],
                    baseline=[2.0],
                ),
                offsets={("t", 0): 15, ("t", 1): 9},
                group="g",
                generation=old.generation,
            )
        # nothing of the stale batch is stored, not even partition 0, which it still owned
        assert await _count(aconn, "readings") == 10
        assert await _count(aconn, "window_results") == 0
        assert await load_offsets(aconn, "g", "t") == {0: 10, 1: 4}
        # the writer's connection is usable again, and the new owner commits
        res = await w.commit_batch(
            readings=readings(tenant="paris-energy-1", device="a", start_ms=T0 + HOUR_MS, n=5),
            offsets={("t", 1): 9},
            group="g",
            generation=new.generation,
        )
        assert res.readings_new == 5
    assert await load_offsets(aconn, "g", "t") == {0: 10, 1: 9}
    # other groups are independent
    assert await load_offsets(aconn, "other", "t") == {}


async def _kill_when_waiting(admin: psycopg.AsyncConnection, writer: Writer) -> int:
    """Wait until the writer's backend waits on a lock, then terminate it; return its pid."""
    for _ in range(200):
        pid = writer.backend_pid
        if pid is not None:
            cur = await admin.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            )
            row = await cur.fetchone()
            if row and row[0] == "Lock":
                await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                return pid
        await asyncio.sleep(0.02)
    msg = "the writer never blocked on the offsets row"
    raise AssertionError(msg)


async def _commit_with_kill(
    db: str, aconn: psycopg.AsyncConnection, writer: Writer, gen: int
) -> object:
    """Hold the offsets row so the writer blocks after writing results, kill its backend."""
    blocker = await psycopg.AsyncConnection.connect(db)
    try:
        await blocker.execute(
            "SELECT * FROM consumer_offsets WHERE group_id = 'g' AND topic = 't' FOR UPDATE"
        )
        task = asyncio.create_task(
            writer.commit_batch(
                readings=readings(tenant="paris-energy-1", device="k", start_ms=T0, n=1000),
                windows=windows(
                    tenant="paris-energy-1",
                    device="k",
                    starts_ms=[T0],
                    actual=[1.0],
                    baseline=[2.0],
                ),
                offsets={("t", 0): 1000},
                group="g",
                generation=gen,
            )
        )
        await _kill_when_waiting(aconn, writer)
        await blocker.rollback()
        return await asyncio.gather(task, return_exceptions=True)
    finally:
        await blocker.close()


async def test_killed_transaction_commits_nothing(db: str, aconn: psycopg.AsyncConnection) -> None:
    claim = await claim_partitions(aconn, group="g", topic="t", partitions=[0])
    async with Writer(dsn=_dsn(aconn), max_attempts=1) as w:
        (outcome,) = await _commit_with_kill(db, aconn, w, claim.generation)  # type: ignore[misc]
        assert isinstance(outcome, StorageError)
        assert outcome.retriable
    assert await _count(aconn, "readings") == 0
    assert await _count(aconn, "window_results") == 0
    assert await _count(aconn, "results_daily") == 0
    assert await load_offsets(aconn, "g", "t") == {}


async def test_killed_transaction_is_retried_once_whole(
    db: str, aconn: psycopg.AsyncConnection
) -> None:
    claim = await claim_partitions(aconn, group="g", topic="t", partitions=[0])
    async with Writer(dsn=_dsn(aconn), max_attempts=3, backoff_s=0.01) as w:
        (outcome,) = await _commit_with_kill(db, aconn, w, claim.generation)  # type: ignore[misc]
        assert not isinstance(outcome, BaseException)
        assert (outcome.attempts, outcome.readings_new, outcome.windows_new) == (2, 1000, 1)  # type: ignore[attr-defined]
    assert await _count(aconn, "readings") == 1000
    assert await _count(aconn, "window_results") == 1
    assert await load_offsets(aconn, "g", "t") == {0: 1000}


async def test_commit_that_landed_before_the_connection_died_is_not_repeated(
    aconn: psycopg.AsyncConnection,
) -> None:
    """The server commits, the client loses the connection before the answer: the retry sees
    its offsets stored and does not insert the rejections a second time."""
    claim = await claim_partitions(aconn, group="g", topic="t", partitions=[0])
    async with Writer(dsn=_dsn(aconn), max_attempts=3, backoff_s=0.01) as w:
        conn = w._conn  # the test reaches in to break the connection right after COMMIT
        assert conn is not None
        real = conn.transaction

        @contextlib.asynccontextmanager
        async def commit_then_drop() -> AsyncIterator[None]:
            async with real():
                yield
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                # the outer transaction has just committed (savepoints leave it in INTRANS)
                await conn.close()
                msg = "server closed the connection unexpectedly"
                raise psycopg.OperationalError(msg)

        conn.transaction = commit_then_drop  # type: ignore[method-assign,assignment]
        res = await w.commit_batch(
            readings=readings(tenant="paris-energy-1", device="x", start_ms=T0, n=3),
            rejections=rejections(
                tenant="paris-energy-1", device="x", reasons=["bad_json"], at_ms=T0
            ),
            offsets={("t", 0): 42},
            group="g",
            generation=claim.generation,
        )
    assert (res.attempts, res.readings_new, res.rejections, res.offsets) == (2, 3, 1, 1)
    assert await _count(aconn, "rejections") == 1
    assert await _count(aconn, "readings") == 3
    assert await load_offsets(aconn, "g", "t") == {0: 42}
