"""Dense integer codes for (device_id, metric) keys, so sorts and lookups run on integers.

Frames in the processors are made of long runs of one key (a Kafka batch is one device, the
buffer is kept sorted), so the strings are compared only at run boundaries: the run heads are
sorted once and ranked, and every row gets its run's code with ``np.repeat``. Code ``i`` is the
``i``-th key in (device_id, metric) byte order, so sorting by code sorts like the strings.
Per-key tables (intervals, register maxima, reference...) are joined at key level, one row per
key, and spread to rows by indexing with the codes. (:func:`processors.kernels.clean.clean` codes
its frame here; the event-time state keeps stable codes of its own,
:mod:`processors.kernels.catalog`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

KEY = ["device_id", "metric"]
_TS_BITS = 42  # a packed sort key is code << 42 | (ts - min ts): 139 years of milliseconds


@dataclass(frozen=True, slots=True)
class KeyIndex:
    """The distinct keys of some frames and each row's key code."""

    keys: pl.DataFrame  # device_id, metric: row i is the key of code i, in byte order
    codes: tuple[np.ndarray, ...]  # per indexed frame, the int64 code of each row

    @property
    def size(self) -> int:
        """Number of distinct keys."""
        return self.keys.height


def run_starts(frame: pl.DataFrame, columns: list[str] = KEY) -> np.ndarray:
    """Row positions where ``columns`` differ from the previous row (0 included when not empty)."""
    if frame.is_empty():
        return np.zeros(0, dtype=np.int64)
    changed = changes(frame.get_column(columns[0]))
    for c in columns[1:]:
        changed |= changes(frame.get_column(c))
    return np.flatnonzero(changed)


def changes(column: pl.Series) -> np.ndarray:
    """Per row, whether it differs from the previous one (row 0: True; two nulls are equal).

    Compares two zero-copy slices, a Series operation rather than a query: nothing to plan.
    """
    n = len(column)
    out = np.ones(n, dtype=bool)
    if n > 1:
        out[1:] = column.slice(1).ne_missing(column.slice(0, n - 1)).to_numpy()
    return out


def index_keys(*frames: pl.DataFrame) -> KeyIndex:
    """Codes of the (device_id, metric) keys of ``frames`` (each needs both columns)."""
    starts = [run_starts(f) for f in frames]
    heads = pl.concat(
        [f.select(KEY)[s] for f, s in zip(frames, starts, strict=True)], how="vertical"
    )
    if heads.is_empty():
        empty = pl.DataFrame(schema={"device_id": pl.String, "metric": pl.String})
        return KeyIndex(keys=empty, codes=tuple(np.zeros(0, np.int64) for _ in frames))
    by_key = heads.with_row_index("_h").sort(KEY, maintain_order=True)  # stable: several x faster
    is_new = np.zeros(by_key.height, dtype=bool)
    is_new[run_starts(by_key)] = True
    head_code = np.empty(by_key.height, dtype=np.int64)
    head_code[by_key["_h"].to_numpy()] = np.cumsum(is_new) - 1
    codes = []
    offset = 0
    for f, s in zip(frames, starts, strict=True):
        lengths = np.diff(np.append(s, f.height))
        codes.append(np.repeat(head_code[offset : offset + len(s)], lengths))
        offset += len(s)
    return KeyIndex(keys=by_key.filter(pl.Series(is_new)).drop("_h"), codes=tuple(codes))


def per_key(index: KeyIndex, table: pl.DataFrame | None, column: str) -> pl.Series:
    """``table[column]`` for each code (null where the table lacks the key).

    ``table`` has one row per (device_id, metric); a repeated key takes its first row.
    """
    if table is None or table.is_empty():
        return pl.repeat(None, index.size, dtype=pl.Float64, eager=True).alias(column)
    right = table.select([*KEY, column])
    try:
        found = index.keys.join(right, on=KEY, how="left", maintain_order="left", validate="m:1")
    except pl.exceptions.ComputeError:  # a repeated key: its first row counts
        right = right.unique(KEY, keep="first", maintain_order=True)
        found = index.keys.join(right, on=KEY, how="left", maintain_order="left")
    return found[column]


def sort_order(code: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Stable order of rows by (code, ts): ties keep their input order (first arrival first)."""
    if len(code) == 0:
        return np.zeros(0, dtype=np.int64)
    low = int(ts.min())
    span = int(ts.max()) - low
    if span < 2**_TS_BITS and int(code.max()) < 2 ** (63 - _TS_BITS):
        packed = (code << _TS_BITS) | (ts - low)
        return np.argsort(packed, kind="stable")
    return np.lexsort((ts, code))


def same_as_previous(*columns: np.ndarray) -> np.ndarray:
    """True where every column equals its previous row (False for row 0)."""
    out = np.zeros(len(columns[0]), dtype=bool)
    if len(out) > 1:
        out[1:] = True
        for c in columns:
            out[1:] &= c[1:] == c[:-1]
    return out


def run_ids(code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by code: start position of each key's run, and each row's run number."""
    first = ~same_as_previous(code)
    return np.flatnonzero(first), np.cumsum(first) - 1


def find_rows(
    left_code: np.ndarray, left_t: np.ndarray, right_code: np.ndarray, right_t: np.ndarray
) -> np.ndarray:
    """For each left (code, t), the first right position with the same pair (-1: none)."""
    if len(left_code) == 0 or len(right_code) == 0:
        return np.full(len(left_code), -1, dtype=np.int64)
    low = min(int(left_t.min()), int(right_t.min()))
    span = max(int(left_t.max()), int(right_t.max())) - low
    top = max(int(left_code.max()), int(right_code.max()))
    if span < 2**_TS_BITS and 0 <= top < 2 ** (63 - _TS_BITS):
        left = (left_code << _TS_BITS) | (left_t - low)
        right = (right_code << _TS_BITS) | (right_t - low)
        if np.all(right[1:] > right[:-1]):  # already sorted (emitted windows are kept so)
            order = np.arange(len(right))
        else:
            order = np.argsort(right, kind="stable")
        sorted_right = right[order]
        pos = np.minimum(np.searchsorted(sorted_right, left), len(right) - 1)
        return np.where(sorted_right[pos] == left, order[pos], -1)
    found = (
        pl.DataFrame({"c": left_code, "t": left_t})
        .join(
            pl.DataFrame({"c": right_code, "t": right_t})
            .with_row_index("j")
            .unique(["c", "t"], keep="first"),
            on=["c", "t"],
            how="left",
            maintain_order="left",
        )["j"]
        .cast(pl.Int64)
        .fill_null(-1)
    )
    return found.to_numpy()
