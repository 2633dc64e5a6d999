"""Replay a recorded feed on a virtual clock: ``speed`` virtual seconds per real second (or as fast
as possible), an optional rate limit, progress, and a clean stop that says how far it got."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from simulators.publishers import files
from simulators.publishers.kafka import LOST, reading_batches

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class ReplayState:
    """How far a replay got (read after a Ctrl-C too)."""

    total: int  # messages to replay
    sent: int = 0  # messages handed to the sink
    virtual_ms: int = 0  # delivery time of the last message sent, UTC ms

    def virtual_time(self) -> str:
        """Delivery time of the last message sent, ISO UTC ("-" before the first)."""
        if not self.sent:
            return "-"
        return datetime.fromtimestamp(self.virtual_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def describe(self) -> str:
        """``1234 of 5000 messages, virtual time 2026-02-01T10:00:00Z``."""
        return f"{self.sent} of {self.total} messages, virtual time {self.virtual_time()}"


@dataclass(frozen=True, slots=True)
class Pace:
    """Virtual clock and rate limit."""

    speed: float | None  # virtual seconds per real second; None = as fast as possible
    rate: float | None = None  # at most this many messages per real second; None = no limit

    @classmethod
    def parse(cls, speed: str, rate: float | None = None) -> Pace:
        """``--speed 3600|max``; raises ValueError on anything else."""
        if speed == "max":
            return cls(None, rate)
        value = float(speed)
        if value <= 0:
            msg = f"speed must be > 0 or 'max', not {speed!r}"
            raise ValueError(msg)
        return cls(value, rate)


async def replay(
    items: pl.DataFrame,
    send: Send,
    *,
    pace: Pace,
    state: ReplayState,
    on_progress: Callable[[ReplayState], None] | None = None,
    progress_every: int = 500,
) -> ReplayState:
    """Hand every row of ``items`` (sorted by ``deliver_at_ms``) to ``send`` at its virtual time."""
    if items.height == 0:
        return state
    t0 = time.monotonic()
    v0 = int(items["deliver_at_ms"][0])
    for row in items.iter_rows(named=True):  # one row per message, paced one by one
        due = 0.0
        if pace.speed is not None:
            due = (row["deliver_at_ms"] - v0) / 1000 / pace.speed
        if pace.rate is not None:
            due = max(due, state.sent / pace.rate)
        wait = due - (time.monotonic() - t0)
        if wait > 0:
            await asyncio.sleep(wait)
        await send(row)
        state.sent += 1
        state.virtual_ms = row["deliver_at_ms"]
        if on_progress is not None and state.sent % progress_every == 0:
            on_progress(state)
    if on_progress is not None:
        on_progress(state)
    return state


def mqtt_items(source: Path) -> pl.DataFrame:
    """Messages to publish: a simulate output folder or its messages.jsonl."""
    path = source / files.MESSAGES if source.is_dir() else source
    return files.read_messages(path)


def kafka_items(source: Path) -> pl.DataFrame:
    """Reading batches to produce, from a simulate output folder (or a file inside it).

    Messages that the gateway would refuse (malformed, wrong tenant) are left out, as their readings
    would never reach Kafka; duplicates and late messages are kept, in delivery order.
    """
    folder = source if source.is_dir() else source.parent
    messages = files.read_messages(folder / files.MESSAGES)
    faults = pl.read_parquet(folder / files.FAULTS)
    lost = faults.filter(pl.col("kind").is_in(LOST))["msg_id"]
    messages = messages.filter(~pl.col("msg_id").is_in(lost.implode()))
    readings = pl.read_parquet(folder / files.READINGS)
    return reading_batches(readings, messages)
