"""Writer throughput: batches of 10,000 readings into the ``readings`` hypertable (its indexes,
dedup, offsets in the same transaction) against a raw psycopg binary COPY (``copy.write_row``)
of the same rows into an identical plain table, alternating in one run.

``results.rows_per_s`` is the writer's default path (COPY into the hypertable in a savepoint,
falling back to the stage table on a duplicate); ``results.staged_rows_per_s`` is the path every
batch with a duplicate takes (COPY into the temporary stage table, then INSERT ... ON CONFLICT DO
NOTHING), measured on other rows of the same shape.

Runs in a throw-away database (storage.testing) on the stack's cluster.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import polars as pl

from bench.summary import progress, rss_mb, summary

BATCH = 10_000
DEVICES = 200
METRICS = ("energy.active.import", "power.active")

_PEER_TABLE = """
CREATE TABLE readings_peer (LIKE readings INCLUDING DEFAULTS);
CREATE UNIQUE INDEX readings_peer_key ON readings_peer (device_id, metric, ts);
CREATE INDEX readings_peer_tenant_ts ON readings_peer (tenant, ts DESC);
"""
_PEER_COLUMNS = "ts, tenant, device_id, metric, value, seq, received_at, quality"
_PEER_COLUMNS_SRC = [
    "ts_ms",
    "tenant",
    "device_id",
    "metric",
    "value",
    "seq",
    "received_at_ms",
    "quality",
]
_PEER_TYPES = ["timestamptz", "text", "text", "text", "float8", "int8", "timestamptz", "int2"]


def make_batch(index: int, start_ms: int) -> pl.DataFrame:
    """10,000 readings: 200 devices x 2 metrics x 25 timestamps, 1 min apart, unique per batch."""
    per = BATCH // (DEVICES * len(METRICS))
    t = start_ms + (index * per + np.arange(per, dtype=np.int64)) * 60_000
    dev = np.repeat(np.arange(DEVICES), per * len(METRICS))
    met = np.tile(np.repeat(np.arange(len(METRICS)), per), DEVICES)
    ts = np.tile(t, DEVICES * len(METRICS))
    rng = np.random.default_rng(index)
    return pl.DataFrame(
        {
            "ts_ms": ts,
            "tenant": [f"paris-energy-{1 + d % 3}" for d in dev],
            "device_id": [f"meter-{d:04d}" for d in dev],
            "metric": [METRICS[m] for m in met],
            "value": rng.random(BATCH) * 100.0,
            "seq": np.arange(BATCH, dtype=np.int64) + index * BATCH,
            "received_at_ms": ts + 1500,
            "quality": np.zeros(BATCH, dtype=np.int16),
        }
    )


def _peer_rows(df: pl.DataFrame) -> list[tuple[Any, ...]]:
    """The batch as Python row tuples, built before the peer's clock starts (the peer is timed
    on its COPY alone; our writer's time includes turning the DataFrame into its buffer)."""
    aware = df.with_columns(
        pl.from_epoch("ts_ms", time_unit="ms").dt.replace_time_zone("UTC"),
        pl.from_epoch("received_at_ms", time_unit="ms").dt.replace_time_zone("UTC"),
    )
    return aware.select(_PEER_COLUMNS_SRC).rows()


def _peer(conn: Any, rows: list[tuple[Any, ...]]) -> float:
    t0 = time.perf_counter()
    copy_sql = f"COPY readings_peer ({_PEER_COLUMNS}) FROM STDIN (FORMAT binary)"
    with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.set_types(_PEER_TYPES)
        for row in rows:
            copy.write_row(row)
    return time.perf_counter() - t0


def run(quick: bool) -> dict[str, Any]:
    """Alternate the peer and our writer, batch by batch, on the same rows."""
    from pilotstream.settings import BaseSettings
    from storage.testing import create_temp_database, drop_database

    n_batches = 12 if quick else 30
    settings = BaseSettings.load()
    progress("creating a throw-away database")
    dsn = create_temp_database(settings)
    try:
        start_ms = int(time.time() * 1000) - 3 * 86_400_000
        batches = [make_batch(i, start_ms) for i in range(n_batches + 1)]  # first one warms up
        ours, theirs, staged, counts = asyncio.run(_alternate(dsn, batches))
    finally:
        drop_database(settings, dsn)
    # rows/s from the median batch: the machine is shared, and a neighbour's burst landing on
    # one batch of one side should not decide the comparison; means are reported beside
    ours_rate = BATCH / float(np.median(ours))
    peer_rate = BATCH / float(np.median(theirs))
    return summary(
        "storage",
        {"batch_rows": BATCH, "batches": len(ours), "devices": DEVICES, "metrics": len(METRICS)},
        {
            "rows_per_s": round(ours_rate),
            "mean_rows_per_s": round(BATCH * len(ours) / sum(ours)),
            "p50_batch_ms": round(float(np.median(ours)) * 1000, 1),
            "max_batch_ms": round(max(ours) * 1000, 1),
            "staged_rows_per_s": round(BATCH / float(np.median(staged))),
            "rows_stored": counts[0],
            "rss_mb": rss_mb(),
        },
        peer_name="psycopg binary COPY (write_row, rows prebuilt) into an identical plain table",
        peer_results={
            "rows_per_s": round(peer_rate),
            "mean_rows_per_s": round(BATCH * len(theirs) / sum(theirs)),
            "p50_batch_ms": round(float(np.median(theirs)) * 1000, 1),
            "rows_stored": counts[1],
        },
        ratio_key="rows_per_s",
    )


async def _alternate(
    dsn: str, batches: list[pl.DataFrame]
) -> tuple[list[float], list[float], list[float], tuple[int, int]]:
    import psycopg

    from storage.offsets import claim_partitions
    from storage.writer import Writer

    ours: list[float] = []
    theirs: list[float] = []
    staged: list[float] = []
    with psycopg.connect(dsn) as peer:
        peer.execute(_PEER_TABLE)
        peer.commit()
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            claim = await claim_partitions(conn, group="bench", topic="bench", partitions=[0])
        async with Writer(dsn=dsn) as writer, Writer(dsn=dsn, optimistic=False) as always:
            for i, df in enumerate(batches):
                rows = _peer_rows(df)
                if i % 2:  # alternate who goes first, so neither always follows the other
                    t_peer = _peer(peer, rows)
                    t_ours = await _commit(writer, df, i, claim.generation)
                else:
                    t_ours = await _commit(writer, df, i, claim.generation)
                    t_peer = _peer(peer, rows)
                # the same work through the stage table and ON CONFLICT DO NOTHING (the path a
                # batch with duplicates takes), on rows one day later
                later = df.with_columns(pl.col("ts_ms") + 86_400_000)
                t_staged = await _commit(always, later, i, claim.generation)
                if i == 0:
                    continue  # warm-up: connections, catalog caches, first chunks
                ours.append(t_ours)
                theirs.append(t_peer)
                staged.append(t_staged)
                progress(
                    f"batch {i}: ours {BATCH / t_ours:,.0f} rows/s, peer {BATCH / t_peer:,.0f} "
                    f"rows/s, ours staged {BATCH / t_staged:,.0f} rows/s"
                )
        row = peer.execute(
            "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM readings_peer)"
        ).fetchone()
    assert row is not None
    return ours, theirs, staged, (int(row[0]), int(row[1]))


async def _commit(writer: Any, df: pl.DataFrame, i: int, generation: int) -> float:
    t0 = time.perf_counter()
    res = await writer.commit_batch(
        readings=df, offsets={("bench", 0): (i + 1) * BATCH}, group="bench", generation=generation
    )
    elapsed = time.perf_counter() - t0
    if res.readings_new != BATCH:
        msg = f"batch {i}: {res.readings_new} new readings, expected {BATCH}"
        raise RuntimeError(msg)
    return elapsed
