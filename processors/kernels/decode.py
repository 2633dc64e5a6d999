"""Turn a poll of :class:`~pilotstream.contracts.ReadingBatch` values into one polars frame.

The loop runs over batches, never over readings. The per-reading columns are the batches' lists
concatenated in place (one pass over the batches extends all five) and handed to polars whole:
for 80,000 readings, concatenating and converting an int column takes ~0.8 ms where
``np.fromiter`` over a ``chain.from_iterable`` takes ~1.2 ms.
Per-batch fields are repeated with a gather, and a text column that holds one value in the whole
poll (tenant, metric, kind: the usual case) becomes a constant column without a gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, itemgetter

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
    lengths = np.fromiter(map(len, map(attrgetter("ts_ms"), batches)), np.int64, len(batches))
    batch_of = np.repeat(np.arange(len(batches)), lengths)
    metric, kind, ts_ms, value, seq = _concatenated(batches)
    received = np.fromiter(map(attrgetter("received_at_ms"), batches), np.int64, len(batches))
    device_ids = pl.Series(list(map(attrgetter("device_id"), batches)), dtype=pl.String())
    return pl.DataFrame(
        {
            "tenant": per_batch_text(list(map(attrgetter("tenant"), batches)), batch_of),
            "device_id": device_ids.gather(batch_of),
            "metric": _text(metric, batches, "metric", lengths, batch_of),
            "kind": _text(kind, batches, "kind", lengths, batch_of),
            "ts_ms": pl.Series(ts_ms, dtype=pl.Int64()),
            "value": pl.Series(value, dtype=pl.Float64()),
            "seq": pl.Series(seq, dtype=pl.Int64()),
            "received_at_ms": np.repeat(received, lengths),
        },
        schema=READING_SCHEMA,
    )


def _concatenated(
    batches: Sequence[ReadingBatch],
) -> tuple[list[str], list[str], list[int], list[float], list[int]]:
    """The batches' metric, kind, ts_ms, value and seq lists, each concatenated into one list.

    One loop over the batches extending five lists in place (``+=`` copies a whole list at C
    speed) costs about half of a ``map`` + ``chain.from_iterable`` per column.
    """
    metric: list[str] = []
    kind: list[str] = []
    ts_ms: list[int] = []
    value: list[float] = []
    seq: list[int] = []
    for b in batches:
        metric += b.metric
        kind += b.kind
        ts_ms += b.ts_ms
        value += b.value
        seq += b.seq
    return metric, kind, ts_ms, value, seq


def _text(
    flat: list[str],
    batches: Sequence[ReadingBatch],
    name: str,
    lengths: np.ndarray,
    batch_of: np.ndarray,
) -> pl.Series:
    """The per-reading text column ``name``; ``flat`` is its concatenation over ``batches``.

    One value in the whole poll gives a constant column; one value per batch a gather of the
    batches' first values (a batch usually carries one metric and kind); else the strings.
    """
    if _one_value(flat):
        return _constant(flat[0], len(flat))
    lists = list(map(attrgetter(name), batches))
    heads = list(map(itemgetter(0), lists)) if lengths.all() else [v[0] if v else "" for v in lists]
    same = np.fromiter(map(list.count, lists, heads), np.int64, len(lists))
    if (same == lengths).all():
        return pl.Series(heads, dtype=pl.String()).gather(batch_of)
    return pl.Series(flat, dtype=pl.String())


def per_batch_text(values: list[str], batch_of: np.ndarray) -> pl.Series:
    """One string per batch, repeated for each of the batch's readings."""
    if _one_value(values):
        return _constant(values[0], len(batch_of))
    return pl.Series(values, dtype=pl.String()).gather(batch_of)


def _one_value(values: list[str]) -> bool:
    """Whether ``values`` is not empty and holds one string only.

    ``list.count`` compares by identity before equality, so a column of one shared string object
    is checked in ~20 us for 80,000 readings.
    """
    return bool(values) and values.count(values[0]) == len(values)


def _constant(value: str, n: int) -> pl.Series:
    """``value`` repeated ``n`` times, built by polars from one element."""
    return pl.Series([value], dtype=pl.String()).new_from_index(0, n)


def dedup(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Collapse duplicates on (device_id, metric, ts_ms), keeping the first arrival.

    Returns:
        The frame sorted by (device_id, metric, ts_ms) and the number of rows dropped.
    """
    out = frame.unique(subset=["device_id", "metric", "ts_ms"], keep="first", maintain_order=True)
    return out.sort(["device_id", "metric", "ts_ms"]), frame.height - out.height
