"""Turn a poll of :class:`~pilotstream.contracts.ReadingBatch` values into one polars frame.

The loop runs over batches, never over readings: each column is the concatenation of the batches'
column lists, and per-batch fields (device, tenant, ...) are repeated with ``np.repeat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import polars as pl

from pilotstream.contracts import ReadingBatch

READING_SCHEMA: dict[str, pl.DataType] = {
    "tenant": pl.String(),
    "device_id": pl.String(),
    "metric": pl.String(),
    "kind": pl.String(),
    "ts_ms": pl.Int64(),
    "value": pl.Float64(),
    "seq": pl.Int64(),
    "received_at_ms": pl.Int64(),
}


def empty_readings() -> pl.DataFrame:
    """A reading frame with no rows and the canonical schema."""
    return pl.DataFrame(schema=READING_SCHEMA)


def decode_batches(batches: Sequence[ReadingBatch]) -> pl.DataFrame:
    """Columns of all readings in ``batches``, in arrival order.

    Returns:
        A frame with the columns of :data:`READING_SCHEMA` (unit, city and gateway are dropped:
        units are canonical per metric, the city follows from the tenant).
    """
    if not batches:
        return empty_readings()
    lengths = np.fromiter((len(b.ts_ms) for b in batches), dtype=np.int64, count=len(batches))

    def per_batch(values: list[object], dtype: pl.DataType) -> pl.Series:
        return pl.Series(values, dtype=dtype).gather(np.repeat(np.arange(len(batches)), lengths))

    def column(name: str) -> list[object]:
        return list(chain.from_iterable(getattr(b, name) for b in batches))

    return pl.DataFrame(
        {
            "tenant": per_batch([b.tenant for b in batches], pl.String()),
            "device_id": per_batch([b.device_id for b in batches], pl.String()),
            "metric": pl.Series(column("metric"), dtype=pl.String()),
            "kind": pl.Series(column("kind"), dtype=pl.String()),
            "ts_ms": np.fromiter(
                chain.from_iterable(b.ts_ms for b in batches), np.int64, int(lengths.sum())
            ),
            "value": np.fromiter(
                chain.from_iterable(b.value for b in batches), np.float64, int(lengths.sum())
            ),
            "seq": np.fromiter(
                chain.from_iterable(b.seq for b in batches), np.int64, int(lengths.sum())
            ),
            "received_at_ms": per_batch([b.received_at_ms for b in batches], pl.Int64()),
        },
        schema=READING_SCHEMA,
    )


def dedup(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Collapse duplicates on (device_id, metric, ts_ms), keeping the first arrival.

    Returns:
        The frame sorted by (device_id, metric, ts_ms) and the number of rows dropped.
    """
    out = frame.unique(subset=["device_id", "metric", "ts_ms"], keep="first", maintain_order=True)
    return out.sort(["device_id", "metric", "ts_ms"]), frame.height - out.height
