"""Readings of the touched keys as arrays sorted by (key code, time), and what is kept of them.

:func:`sort_rows` turns a frame into :class:`SortedRows` (the frame plus sorted numpy columns and
their key codes, :mod:`processors.kernels.keys`); :func:`evict` decides which rows stay in the
buffer; :func:`split_devices` separates the state rows of the devices a call touches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from processors.kernels.clean import COUNTER, GAUGE, STUCK_CHECKED, kind_bits
from processors.kernels.keys import KeyIndex, index_keys, run_ids, sort_order
from processors.kernels.params import EventTimeParams
from processors.kernels.windows import bucket_starts

NO_WATERMARK = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class SortedRows:
    """Readings of some keys as arrays sorted by (code, ts), with their source frame."""

    frame: pl.DataFrame  # source rows (reading columns and ``anchor``), any order
    order: np.ndarray  # frame positions, sorted
    index: KeyIndex  # the key codes
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
            index=self.index,
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


def sort_rows(
    frame: pl.DataFrame, emitted: pl.DataFrame, stuck_kinds: tuple[str, ...]
) -> tuple[SortedRows, KeyIndex]:
    """Rows of ``frame`` sorted by (key, time), first arrival first among equal times.

    ``emitted`` (windows) is indexed too, so its rows get codes of the same keys.
    """
    frame = frame.rechunk()  # gathers from one chunk are several times faster
    index = index_keys(frame, emitted)
    code = index.codes[0]
    ts = frame["ts_ms"].to_numpy()
    order = sort_order(code, ts)
    rows = SortedRows(
        frame=frame,
        order=order,
        index=index,
        code=code[order],
        ts=ts[order],
        value=frame["value"].to_numpy()[order],
        kinds=kind_bits(frame["kind"], stuck_kinds)[order],
        anchor=frame["anchor"].to_numpy()[order],
    )
    return rows, index


def split_devices(frame: pl.DataFrame, devices: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows of ``devices`` and the others (checked once per run of one device)."""
    if frame.is_empty():
        return frame, frame
    starts = np.flatnonzero(
        frame.select((pl.col("device_id") != pl.col("device_id").shift()).fill_null(True))
        .to_series()
        .to_numpy()
    )
    hit = frame["device_id"].gather(starts).is_in(devices.implode()).to_numpy()
    if hit.all():
        return frame, frame.clear()
    if not hit.any():
        return frame.clear(), frame
    mask = pl.Series(np.repeat(hit, np.diff(np.append(starts, frame.height))))
    return frame.filter(mask), frame.filter(~mask)


def device_watermarks(names: pl.Series, watermarks: pl.DataFrame) -> np.ndarray:
    """Watermark of each device in ``names`` (NO_WATERMARK where unknown)."""
    table = watermarks.select("device_id", "watermark_ms")
    left = names.to_frame("device_id")
    try:
        found = left.join(table, on="device_id", how="left", maintain_order="left", validate="m:1")
    except pl.exceptions.ComputeError:  # a repeated device: its first row counts
        table = table.unique("device_id", keep="first", maintain_order=True)
        found = left.join(table, on="device_id", how="left", maintain_order="left")
    return found["watermark_ms"].fill_null(NO_WATERMARK).to_numpy()


def watermark_rows(names: pl.Series, watermarks: pl.DataFrame) -> np.ndarray | None:
    """Row of each device of ``names`` in ``watermarks`` (-1: none; None: a device repeats)."""
    table = watermarks.select("device_id").with_row_index("_w")
    left = names.to_frame("device_id")
    try:
        found = left.join(table, on="device_id", how="left", maintain_order="left", validate="m:1")
    except pl.exceptions.ComputeError:
        return None
    return found["_w"].cast(pl.Int64).fill_null(-1).to_numpy()


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
    n_final = np.bincount(key, final, len(start)).astype(np.int64)
    position = np.arange(len(rows.code)) - start[key]
    stuck = (rows.kinds & STUCK_CHECKED) != 0
    # counters keep three: a glitch or reset is judged on the two readings before it
    counter = (rows.kinds & COUNTER) != 0
    keep_n = np.where(stuck, rules.clean.stuck_run - 1, np.where(counter, 3, 1))
    keep: np.ndarray = ~final | (position >= n_final[key] - keep_n)
    return keep


def buffer_of(rows: SortedRows) -> pl.DataFrame:
    """The rows as a buffer frame (reading columns and ``anchor``), sorted."""
    return buffer_frame(rows.frame, rows.order, rows.anchor)


def buffer_frame(frame: pl.DataFrame, order: np.ndarray, anchor: np.ndarray) -> pl.DataFrame:
    """Rows ``order`` of ``frame`` as a buffer frame with their ``anchor`` flags."""
    return frame[order].with_columns(anchor=pl.Series(anchor, dtype=pl.Boolean))
