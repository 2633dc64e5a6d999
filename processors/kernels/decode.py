"""Turn a poll of :class:`~pilotstream.contracts.ReadingBatch` values into one polars frame.

The loop runs over batches, never over readings: each column is the concatenation of the batches'
column lists, and per-batch fields (device, tenant, ...) are repeated with a gather; so are a
batch's metric and kind when the whole batch has one (the usual case).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

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
    ts_lists = list(map(attrgetter("ts_ms"), batches))
    lengths = np.fromiter(map(len, ts_lists), dtype=np.int64, count=len(batches))
    n = int(lengths.sum())
    batch_of = np.repeat(np.arange(len(batches)), lengths)

    def per_batch(values: list[Any], dtype: pl.DataType) -> pl.Series:
        return pl.Series(values, dtype=dtype).gather(batch_of)

    def text(name: str) -> pl.Series:
        # a batch usually carries one metric and kind: repeat it rather than build n strings
        lists = list(map(attrgetter(name), batches))
        heads = (
            list(map(itemgetter(0), lists)) if lengths.all() else [v[0] if v else "" for v in lists]
        )
        same = np.fromiter(map(list.count, lists, heads), np.int64, len(lists))
        if (same == lengths).all():
            return per_batch(heads, pl.String())
        return pl.Series(list(chain.from_iterable(lists)), dtype=pl.String())

    def numbers(name: str, dtype: type[np.generic]) -> np.ndarray:
        lists = ts_lists if name == "ts_ms" else map(attrgetter(name), batches)
        return np.fromiter(chain.from_iterable(lists), dtype, n)

    return pl.DataFrame(
        {
            "tenant": per_batch([b.tenant for b in batches], pl.String()),
            "device_id": per_batch([b.device_id for b in batches], pl.String()),
            "metric": text("metric"),
            "kind": text("kind"),
            "ts_ms": numbers("ts_ms", np.int64),
            "value": numbers("value", np.float64),
            "seq": numbers("seq", np.int64),
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
