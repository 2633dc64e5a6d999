"""PostgreSQL binary COPY buffers built from columns with numpy, without a per-row Python loop.

Format (PostgreSQL docs, "COPY", binary format): an 11-byte signature, a 32-bit flags word and a
32-bit header extension length; then per row a 16-bit field count and, per field, a 32-bit length
followed by the value in network byte order; then a 16-bit -1 trailer. ``timestamptz`` is int64
microseconds since 2000-01-01 UTC.

Layout trick: fixed-width columns come first, text columns last. A batch holds few distinct
combinations of text values (device x metric), each encoded once; rows whose combination has the
same encoded length share one packed structured numpy dtype (fixed fields + an ``S<len>`` field),
so each such group is filled column by column and written with one ``tobytes()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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

    def slice(self, start: int, stop: int) -> TextColumn:
        """Rows ``start:stop``, same dictionary."""
        return TextColumn(self.codes[start:stop], self.values)


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

    ``timestamptz_ms`` columns take Unix milliseconds. No column may hold nulls. Rows come out
    grouped by their encoded length (in input order within a group), which the database ignores.
    """
    return SIGNATURE + encode_body(fixed, text) + TRAILER


def encode_body(
    fixed: Sequence[tuple[FixedType, npt.ArrayLike]], text: Sequence[TextColumn] | TextRows
) -> bytes:
    """The rows only (no signature, no trailer): a payload may be streamed in several bodies.

    ``text`` may be :class:`TextRows` made once for a whole payload (see :func:`text_rows`), so
    that streaming it in chunks does not re-encode the text combinations of every chunk.
    """
    arrays = [(kind, np.asarray(values)) for kind, values in fixed]
    rows = text if isinstance(text, TextRows) else text_rows(text) if text else None
    n = len(arrays[0][1]) if arrays else len(rows.combo) if rows is not None else 0
    for k, (_, arr) in enumerate(arrays):
        if len(arr) != n:
            msg = f"column {k} has {len(arr)} values, expected {n}"
            raise ValueError(msg)
    if rows is not None and len(rows.combo) != n:
        msg = f"text columns have {len(rows.combo)} rows, expected {n}"
        raise ValueError(msg)
    fields: list[tuple[str, Any]] = [("n", ">i2")]
    for k, (kind, _) in enumerate(arrays):
        fields += [(f"l{k}", ">i4"), (f"v{k}", _DTYPES[kind])]
    if rows is None:
        return _fill(fields, arrays, len(fixed), np.arange(n)).tobytes()
    row_len = rows.lengths[rows.combo]
    parts = []
    for width in np.unique(row_len):
        picked = np.flatnonzero(row_len == width)
        block = _fill([*fields, ("s", f"S{width}")], arrays, len(fixed) + rows.columns, picked)
        block["s"] = rows.suffixes_of_width(int(width))[rows.combo[picked]]
        parts.append(block.tobytes())
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class TextRows:
    """Text columns encoded once: per row the index of its combination of values, per
    combination its encoded bytes (length + UTF-8 for each column). A batch holds few
    combinations (device x metric), so this is the only per-combination Python work."""

    combo: npt.NDArray[np.int64]  # per row: index into suffixes
    suffixes: Sequence[bytes]  # per combination: its encoded text fields
    lengths: npt.NDArray[np.int64]  # per combination: len(suffix)
    columns: int  # how many text columns
    _widths: dict[int, npt.NDArray[Any]] = field(default_factory=dict)  # width -> S<width> array

    def slice(self, start: int, stop: int) -> TextRows:
        """Rows ``start:stop``, sharing the combinations (and their cached arrays)."""
        return TextRows(
            self.combo[start:stop], self.suffixes, self.lengths, self.columns, self._widths
        )

    def suffixes_of_width(self, width: int) -> npt.NDArray[Any]:
        """Every suffix as a fixed ``S<width>`` array (only those of that length are used)."""
        out = self._widths.get(width)
        if out is None:
            # entries of another length are truncated or padded: harmless, never gathered
            out = self._widths[width] = np.array(self.suffixes, dtype=f"S{max(width, 1)}")
        return out


def text_rows(text: Sequence[TextColumn]) -> TextRows:
    """Encode the combinations of text values of these columns (see :class:`TextRows`)."""
    combo, suffixes = _text_suffixes(text)
    lengths = np.fromiter((len(b) for b in suffixes), dtype=np.int64, count=len(suffixes))
    return TextRows(combo, suffixes, lengths, len(text))


def _fill(
    fields: list[tuple[str, Any]],
    arrays: Sequence[tuple[str, npt.NDArray[Any]]],
    ncols: int,
    rows: npt.NDArray[np.int64],
) -> npt.NDArray[Any]:
    """Rows ``rows`` as one packed structured array: field count, then (length, value) per column."""
    block = np.empty(len(rows), dtype=np.dtype(fields))
    block["n"] = ncols
    for k, (kind, arr) in enumerate(arrays):
        block[f"l{k}"] = np.dtype(_DTYPES[kind]).itemsize
        values = arr[rows]
        if kind == "timestamptz_ms":
            block[f"v{k}"] = (values.astype(np.int64) - PG_EPOCH_MS) * 1000
        else:
            block[f"v{k}"] = values
    return block


def _text_suffixes(text: Sequence[TextColumn]) -> tuple[npt.NDArray[np.int64], list[bytes]]:
    """Per row, the index of its combination of text values; per combination, its encoded bytes
    (length + UTF-8 for each text column). A batch holds few combinations (device x metric)."""
    key = np.zeros(len(text[0].codes), dtype=np.int64)
    for col in text:  # mixed radix, densified at each step so it cannot overflow
        _, key = np.unique(key * max(len(col.values), 1) + col.codes, return_inverse=True)
    _, first, combo = np.unique(key, return_index=True, return_inverse=True)
    encoded = [
        [len(b).to_bytes(4, "big") + b for b in (v.encode() for v in col.values)] for col in text
    ]
    suffixes = [
        b"".join(enc[code] for enc, code in zip(encoded, codes, strict=True))
        for codes in zip(*(col.codes[first].tolist() for col in text), strict=True)
    ]
    return combo.astype(np.int64), suffixes
