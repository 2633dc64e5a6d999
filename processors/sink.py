"""From kernel outputs to what the storage writer and the deltas topic take, as whole columns.

- :func:`readings_rows`: the readings of a poll to store (first arrival per dedup key, refused
  ones removed); redeliveries of stored readings are skipped by the writer's upsert.
- :func:`window_rows`: scored windows -> ``storage.frames.WINDOWS`` columns.
- :func:`rejection_rows`: refused readings (``too_late``, ``future_ts``) -> ``REJECTIONS`` columns,
  each with the reading as JSON for its payload; :func:`bad_batch_rows` for undecodable records.
- :func:`window_deltas` + :class:`DeltaPublisher`: the windows the commit changed, as
  :class:`~pilotstream.contracts.WindowDelta` on ``pilotstream.deltas.v1`` (after the commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pilotstream.codec import encode
from pilotstream.contracts import WindowDelta

DEDUP_KEY = ["device_id", "metric", "ts_ms"]
_DELTA_FIELDS = (
    "tenant",
    "device_id",
    "metric",
    "bucket_start_ms",
    "width_s",
    "actual",
    "baseline",
    "delta",
    "factor",
    "avoided_co2e_kg",
    "coverage",
    "baseline_model_id",
    "factor_id",
    "revision",
)


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A Kafka record that could not be decoded as a reading batch."""

    partition: int  # Kafka partition
    offset: int  # Kafka offset
    key: bytes | None  # record key (the device id when the producer followed the contract)
    value: bytes  # original bytes
    detail: str  # why decoding failed
    timestamp_ms: int  # Kafka record timestamp, UTC ms


def readings_rows(frame: pl.DataFrame, rejected: pl.DataFrame, duplicates: int) -> pl.DataFrame:
    """Readings of a poll to store: first arrival per (device, metric, ts), refused ones removed.

    ``duplicates`` is the step's count of readings that repeat an earlier one (in the poll or
    buffered): with none and nothing refused, every row is stored as is (no hash pass).
    """
    firsts = frame
    if duplicates:
        firsts = frame.unique(DEDUP_KEY, keep="first", maintain_order=True)
    if rejected.height:
        firsts = firsts.join(rejected.select(DEDUP_KEY), on=DEDUP_KEY, how="anti")
    return firsts.select(
        "ts_ms", "tenant", "device_id", "metric", "value", "seq", "received_at_ms"
    ).with_columns(quality=pl.lit(0, pl.Int16))


def window_rows(scored: pl.DataFrame) -> pl.DataFrame:
    """Scored windows -> writer columns; a missing baseline is stored as the actual (delta 0)."""
    return scored.select(
        "bucket_start_ms",
        pl.col("width_s").cast(pl.Int32),
        "tenant",
        "device_id",
        "metric",
        "actual",
        baseline=pl.coalesce("baseline", "actual"),
        delta=pl.col("delta"),
        factor=pl.col("factor"),
        avoided_co2e_kg=pl.col("avoided_co2e_kg"),
        coverage=pl.col("coverage").clip(0.0, 1.0),
        baseline_model_id=pl.col("baseline_model_id").fill_null(""),
        factor_id=pl.col("factor_id").fill_null(""),
    )


def rejection_rows(rejected: pl.DataFrame, *, topic: str, max_bytes: int) -> pl.DataFrame:
    """Refused readings (``reason``, ``detail`` columns) -> writer rejection columns."""
    body = pl.struct("device_id", "metric", "kind", "ts_ms", "value", "seq").struct.json_encode()
    return rejected.select(
        "received_at_ms",
        "tenant",
        "device_id",
        "reason",
        topic=pl.lit(topic),
        detail=pl.format(
            "{} {}: {}", "metric", "ts_ms", pl.col("detail").fill_null("no watermark yet")
        ),
        gateway_id=pl.lit(""),
        payload=body.cast(pl.Binary).bin.slice(0, max_bytes),
        payload_size=body.str.len_bytes().cast(pl.Int32),
    )


def bad_batch_rows(records: Sequence[BadRecord], *, topic: str, max_bytes: int) -> pl.DataFrame:
    """Undecodable records -> rejection rows with reason ``bad_batch`` and the original bytes."""
    return pl.DataFrame(
        {
            "received_at_ms": [r.timestamp_ms for r in records],
            "tenant": ["" for _ in records],
            "device_id": [_key_text(r.key) for r in records],
            "reason": ["bad_batch" for _ in records],
            "topic": [topic for _ in records],
            "detail": [
                f"partition {r.partition} offset {r.offset}: {r.detail}".replace("\x00", "")
                for r in records
            ],
            "gateway_id": ["" for _ in records],
            "payload": [r.value[:max_bytes] for r in records],
            "payload_size": [len(r.value) for r in records],
        },
        schema={
            "received_at_ms": pl.Int64,
            "tenant": pl.String,
            "device_id": pl.String,
            "reason": pl.String,
            "topic": pl.String,
            "detail": pl.String,
            "gateway_id": pl.String,
            "payload": pl.Binary,
            "payload_size": pl.Int32,
        },
    )


def window_deltas(windows: pl.DataFrame, changed: pl.DataFrame) -> list[WindowDelta]:
    """The stored windows a commit inserted or revised, with their database revision."""
    if changed.is_empty() or windows.is_empty():
        return []
    key = ["device_id", "metric", "width_s", "bucket_start_ms"]
    rows = windows.with_columns(pl.col("width_s").cast(pl.Int64)).join(
        changed.select(*key, "revision").with_columns(pl.col("width_s").cast(pl.Int64)),
        on=key,
        how="inner",
    )
    return [WindowDelta(**row) for row in rows.select(_DELTA_FIELDS).iter_rows(named=True)]


class DeltaPublisher:
    """Publishes window deltas (key = device id) with a producer passed in (aiokafka's)."""

    def __init__(self, *, producer: Any, topic: str):
        if not topic:
            msg = "topic must not be empty"
            raise ValueError(msg)
        self._producer = producer
        self._topic = topic

    async def publish(self, deltas: Sequence[WindowDelta]) -> int:
        """Send all deltas and wait for the broker's acks; returns how many were sent."""
        futures = [
            await self._producer.send(self._topic, value=encode(d), key=d.device_id.encode())
            for d in deltas
        ]
        for fut in futures:
            await fut
        return len(futures)


def _key_text(key: bytes | None) -> str:
    if not key:
        return ""
    return key.decode("utf-8", errors="replace").replace("\x00", "")[:64]
