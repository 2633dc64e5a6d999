"""Readings of the touched keys as arrays sorted by (key rank, time), and what is kept of them.

:func:`sort_rows` turns a coded frame (``state.BUFFER_SCHEMA``) into :class:`SortedRows` (the
frame plus sorted numpy columns); :func:`evict` decides which rows stay in the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from processors.kernels.catalog import Catalog
from processors.kernels.clean import COUNTER, GAUGE, STUCK_CHECKED
from processors.kernels.keys import run_ids, sort_order
from processors.kernels.params import EventTimeParams
from processors.kernels.windows import bucket_starts


@dataclass(frozen=True, slots=True)
class SortedRows:
    """Readings of some keys as arrays sorted by (key rank, ts), with their source frame."""

    frame: pl.DataFrame  # source rows (``state.BUFFER_SCHEMA``), any order
    order: np.ndarray  # frame positions, sorted
    code: np.ndarray  # key code of each sorted row
    ts: np.ndarray  # event time, ms
    value: np.ndarray  # reading value
    kinds: np.ndarray  # clean.kind_bits
    anchor: np.ndarray  # the row was final before this batch (kept as a predecessor)

    def take(self, keep: np.ndarray) -> SortedRows:
        """The rows where ``keep`` is True (still sorted)."""
        if keep.all():
            return self
        return SortedRows(
            frame=self.frame,
            order=self.order[keep],
            code=self.code[keep],
            ts=self.ts[keep],
            value=self.value[keep],
            kinds=self.kinds[keep],
            anchor=self.anchor[keep],
        )

    def final_end(self, widest_s: int) -> np.ndarray:
        """End (UTC ms) of each row's widest window."""
        gauge = (self.kinds & GAUGE) != 0
        return bucket_starts(self.ts, gauge, widest_s) + widest_s * 1000


def sort_rows(frame: pl.DataFrame, catalog: Catalog, stuck_kinds: tuple[str, ...]) -> SortedRows:
    """Rows of a coded ``frame`` sorted by (key rank, time), first arrival first among equal
    times: a device's keys are adjacent, in (device_id, metric) byte order."""
    frame = frame.rechunk()  # gathers from one chunk are several times faster
    code = frame["code"].to_numpy().astype(np.int64)  # int32 indices: each take converts them
    ts = frame["ts_ms"].to_numpy()
    # ``take`` rather than ``[...]``: numpy's take is a third faster for index arrays
    order = sort_order(catalog.rank.take(code), ts)
    label_bits = _label_bits(catalog.labels["kind"].to_list(), stuck_kinds)
    return SortedRows(
        frame=frame,
        order=order,
        code=code.take(order),
        ts=ts.take(order),
        value=frame["value"].to_numpy().take(order),
        kinds=label_bits.take(frame["label"].to_numpy().astype(np.int64).take(order)),
        anchor=frame["anchor"].to_numpy().take(order),
    )


def _label_bits(kinds: list[str | None], stuck_kinds: tuple[str, ...]) -> np.ndarray:
    """:func:`~processors.kernels.clean.kind_bits` of each label's kind (a handful of labels)."""
    return np.array(
        [
            (COUNTER if k == "counter" else 0)
            | (GAUGE if k == "gauge" else 0)
            | (STUCK_CHECKED if k in stuck_kinds else 0)
            for k in kinds
        ],
        dtype=np.int8,
    )


def evict(
    rows: SortedRows,
    watermark: np.ndarray,
    rules: EventTimeParams,
    *,
    final: np.ndarray | None = None,
) -> SortedRows:
    """Drop final readings, keeping the last few per key as anchors (``anchor`` = final).

    ``final`` (per row) saves recomputing it when the caller has it.
    """
    if final is None:
        final = rows.final_end(rules.widest_s) + rules.allowed_lateness_ms < watermark[rows.code]
    keep = kept_rows(rows, final, rules)
    return replace(rows.take(keep), anchor=final[keep])


def kept_rows(rows: SortedRows, final: np.ndarray, rules: EventTimeParams) -> np.ndarray:
    """Rows that stay in the buffer: those not final, and the last few final ones per key.

    Rows are sorted by (key, time) and finality is a time threshold per device, so a key's final
    rows are a prefix of its rows: positions come from array arithmetic.
    """
    start, key = run_ids(rows.code)
    n_final = (  # per key run (reduceat: a third of a weighted bincount's time)
        np.add.reduceat(final.astype(np.int64), start) if len(start) else np.zeros(0, np.int64)
    )
    position = np.arange(len(rows.code)) - start.take(key)
    # per kind bits (a table of 8: one gather): stuck-checked kinds keep stuck_run - 1,
    # counters three (a glitch or reset is judged on the two readings before it), others one
    keep_n = np.array(
        [
            rules.clean.stuck_run - 1 if b & STUCK_CHECKED else 3 if b & COUNTER else 1
            for b in range(8)
        ],
        dtype=np.int64,
    )[rows.kinds & (COUNTER | GAUGE | STUCK_CHECKED)]
    keep: np.ndarray = ~final | (position >= n_final.take(key) - keep_n)
    return keep


def buffer_frame(
    frame: pl.DataFrame, order: np.ndarray, anchor: np.ndarray, cleaned: np.ndarray | None = None
) -> pl.DataFrame:
    """Rows ``order`` of a coded ``frame`` with their new ``anchor`` flags and, if given, their
    new ``cleaned`` fingerprints (that column is then not gathered).

    Built column by column: a query's planning costs more than the gathers themselves.
    """
    replaced = {"anchor": anchor} if cleaned is None else {"anchor": anchor, "cleaned": cleaned}
    rest = pl.DataFrame([frame.get_column(c) for c in frame.columns if c not in replaced])
    gathered = rest[order]
    columns = {c: replaced[c] if c in replaced else gathered.get_column(c) for c in frame.columns}
    return pl.DataFrame(columns, schema=frame.schema)
