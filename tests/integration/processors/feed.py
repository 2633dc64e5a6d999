"""Deterministic reading feeds, a producer helper and the one-pass reference of the kernels."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
from aiokafka import AIOKafkaProducer

from pilotstream.codec import encode
from pilotstream.contracts import ReadingBatch
from processors.kernels import EventTimeParams, EventTimeState, close_idle, decode_batches, step

TENANT = "paris-energy-1"
HOUR_MS = 3_600_000
ROOT = Path(__file__).resolve().parents[3]


def start_ms(hours_ago: int = 48) -> int:
    """An hour boundary in the past (readings are neither future nor beyond the horizon)."""
    now = int(np.datetime64("now", "ms").astype(np.int64))
    return (now // HOUR_MS - hours_ago) * HOUR_MS


def counter_feed(
    devices: int, per_device: int, *, t0: int, step_ms: int = 60_000
) -> list[ReadingBatch]:
    """One single-reading batch per (device, time): energy counters rising at a device's rate."""
    out = []
    for d in range(devices):
        rate = 0.01 * (1 + d % 7)
        ts = t0 + step_ms * np.arange(1, per_device + 1)
        values = 100.0 + rate * np.arange(1, per_device + 1)
        out.append((f"dev-{d:04d}", ts.tolist(), np.round(values, 6).tolist()))
    return [
        ReadingBatch(
            tenant=TENANT,
            city="paris",
            device_id=dev,
            gateway_id="gw-test",
            received_at_ms=t0,
            metric=["energy.active.import"] * len(ts),
            ts_ms=ts,
            value=vals,
            unit=["kWh"] * len(ts),
            kind=["counter"] * len(ts),
            seq=[-1] * len(ts),
        )
        for dev, ts, vals in out
    ]


def split_random(
    batches: Sequence[ReadingBatch], rng: random.Random, max_len: int = 40
) -> list[ReadingBatch]:
    """Cut each device's readings into random consecutive batches; interleave devices randomly."""
    queues = []
    for b in batches:
        parts, i = [], 0
        while i < len(b):
            j = min(len(b), i + rng.randint(1, max_len))
            parts.append(_slice(b, i, j))
            i = j
        queues.append(parts)
    out = []
    while any(queues):
        q = rng.choice([q for q in queues if q])
        out.append(q.pop(0))
    return out


def _slice(b: ReadingBatch, i: int, j: int) -> ReadingBatch:
    return ReadingBatch(
        tenant=b.tenant,
        city=b.city,
        device_id=b.device_id,
        gateway_id=b.gateway_id,
        received_at_ms=b.received_at_ms,
        metric=b.metric[i:j],
        ts_ms=b.ts_ms[i:j],
        value=b.value[i:j],
        unit=b.unit[i:j],
        kind=b.kind[i:j],
        seq=b.seq[i:j],
    )


async def produce(
    bootstrap: str, topic: str, batches: Sequence[ReadingBatch | bytes], key: bytes = b"x"
) -> None:
    """Send batches keyed by device id (raw bytes with ``key``) and wait for every ack."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futs = []
        for b in batches:
            if isinstance(b, bytes):
                futs.append(await producer.send(topic, value=b, key=key))
            else:
                futs.append(await producer.send(topic, value=encode(b), key=b.device_id.encode()))
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def one_pass(batches: Sequence[ReadingBatch], params: EventTimeParams) -> pl.DataFrame:
    """Windows of one kernel pass over all readings, every window closed at the end."""
    frame = decode_batches(list(batches))
    now = int(frame["ts_ms"].max()) + 1
    first = step(EventTimeState(), frame, now_ms=now, params=params)
    last = close_idle(first.state, now_ms=now, idle_ms=0, params=params)
    both = pl.concat([first.windows, last.windows])
    key = ["device_id", "metric", "width_s", "bucket_start_ms"]
    return both.unique(key, keep="last").select(*key, "actual", "coverage").sort(key)


def stored_windows(dsn: str) -> pl.DataFrame:
    """window_results of a database, in the shape of :func:`one_pass`."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT device_id, metric, width_s::bigint, "
            "(extract(epoch FROM bucket_start) * 1000)::bigint, actual, coverage "
            "FROM window_results ORDER BY 1, 2, 3, 4"
        ).fetchall()
    schema = {
        "device_id": pl.String,
        "metric": pl.String,
        "width_s": pl.Int64,
        "bucket_start_ms": pl.Int64,
        "actual": pl.Float64,
        "coverage": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def scalar(dsn: str, sql: str) -> int:
    """One integer from a query."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def process_cmd(lane: object, idle_s: float = 4.0, *extra: str) -> list[str]:
    """``pilotstream process`` for a lane, exiting when idle."""
    return [
        sys.executable,
        "-m",
        "pilotstream.cli",
        "process",
        "--readings-topic",
        lane.topic,
        "--group-id",
        lane.group,  # type: ignore[attr-defined]
        "--pg-database",
        lane.database,
        "--kafka-bootstrap",
        lane.bootstrap,  # type: ignore[attr-defined]
        "--publish-deltas",
        "false",
        "--exit-when-idle",
        str(idle_s),
        "--session-timeout-ms",
        "6000",
        "--log-level",
        "WARNING",
        *extra,
    ]


def spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
    """Start a processor subprocess from the repository root."""
    return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stderr=subprocess.PIPE)
