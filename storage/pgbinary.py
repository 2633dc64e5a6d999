"""PostgreSQL binary COPY buffers built from columns with numpy, without a per-row Python loop.

Format (PostgreSQL docs, "COPY", binary format): an 11-byte signature, a 32-bit flags word and a
32-bit header extension length; then per row a 16-bit field count and, per field, a 32-bit length
followed by the value in network byte order; then a 16-bit -1 trailer. ``timestamptz`` is int64
microseconds since 2000-01-01 UTC.

Layout trick: fixed-width columns come first, so every row starts with the same-size block, built
as one structured numpy array; text columns follow, dictionary-encoded (few distinct devices,
metrics and tenants per batch). The buffer is then one gather over (row block, text, text, ...)
segments: ``source[np.repeat(src - dst, length) + arange(total)]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z in Unix milliseconds

FixedType = Literal["int2", "int4", "int8", "float8", "timestamptz_ms"]
_DTYPES: dict[str, str] = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float8": ">f8",
    "timestamptz_ms": ">i8",
}


@dataclass(frozen=True, slots=True)
class TextColumn:
    """A text column as dictionary codes into ``values``."""

    codes: npt.NDArray[np.int64]  # per row: index into values
    values: Sequence[str]  # distinct strings


def text_column(series: pl.Series) -> TextColumn:
    """Dictionary-encode a polars string column (order of first appearance)."""
    uniq = series.unique(maintain_order=True)
    codes = series.replace_strict(
        uniq, pl.int_range(len(uniq), eager=True, dtype=pl.Int64), return_dtype=pl.Int64
    )
    return TextColumn(codes.to_numpy(), uniq.to_list())


def encode_rows(
    fixed: Sequence[tuple[FixedType, npt.ArrayLike]], text: Sequence[TextColumn]
) -> bytes:
    """The complete COPY ... (FORMAT binary) payload for the rows (fixed columns, then text ones).

    ``timestamptz_ms`` columns take Unix milliseconds. No column may hold nulls.
    """
    n = len(np.asarray(fixed[0][1])) if fixed else len(text[0].codes)
    ncols = len(fixed) + len(text)
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for k, (kind, _) in enumerate(fixed):
        fields += [(f"l{k}", ">i4"), (f"v{k}", _DTYPES[kind])]
    block = np.empty(n, dtype=np.dtype(fields))
    block["n"] = ncols
    for k, (kind, values) in enumerate(fixed):
        arr = np.asarray(values)
        if len(arr) != n:
            msg = f"column {k} has {len(arr)} values, expected {n}"
            raise ValueError(msg)
        block[f"l{k}"] = np.dtype(_DTYPES[kind]).itemsize
        if kind == "timestamptz_ms":
            block[f"v{k}"] = (arr.astype(np.int64) - PG_EPOCH_MS) * 1000
        else:
            block[f"v{k}"] = arr
    width = block.dtype.itemsize
    if not text:
        return SIGNATURE + block.tobytes() + TRAILER

    # Source = row blocks, then every text column's encoded distinct values (length + UTF-8).
    pieces = [block.view(np.uint8)]
    seg_src = np.empty((n, 1 + len(text)), dtype=np.int64)
    seg_len = np.empty((n, 1 + len(text)), dtype=np.int64)
    seg_src[:, 0] = np.arange(n, dtype=np.int64) * width
    seg_len[:, 0] = width
    base = n * width
    for j, col in enumerate(text, start=1):
        if len(col.codes) != n:
            msg = f"text column {j} has {len(col.codes)} values, expected {n}"
            raise ValueError(msg)
        encoded = [v.encode("utf-8") for v in col.values]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        blob = b"".join(len(e).to_bytes(4, "big") + e for e in encoded)
        starts = base + np.concatenate(([0], np.cumsum(lengths + 4)[:-1]))
        seg_src[:, j] = starts[col.codes]
        seg_len[:, j] = (lengths + 4)[col.codes]
        pieces.append(np.frombuffer(blob, dtype=np.uint8))
        base += len(blob)
    source = np.concatenate(pieces)
    src = seg_src.ravel()
    length = seg_len.ravel()
    dst = np.cumsum(length) - length
    total = int(dst[-1] + length[-1]) if n else 0
    index = np.repeat(src - dst, length) + np.arange(total, dtype=np.int64)
    return SIGNATURE + source[index].tobytes() + TRAILER
