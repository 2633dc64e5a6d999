"""The numpy COPY encoder against a plain per-row reference built with struct."""

from __future__ import annotations

import struct

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.pgbinary import PG_EPOCH_MS, SIGNATURE, TRAILER, encode_rows, text_column


def _reference_rows(
    ts: list[int], val: list[float], q: list[int], names: list[str], dev: list[str]
) -> list[bytes]:
    """Each row encoded on its own, per the PostgreSQL binary COPY format."""
    rows = []
    for t, v, k, n, d in zip(ts, val, q, names, dev, strict=True):
        out = bytearray(struct.pack(">h", 5))
        out += struct.pack(">iq", 8, (t - PG_EPOCH_MS) * 1000)
        out += struct.pack(">id", 8, v)
        out += struct.pack(">ih", 2, k)
        for s in (n, d):
            b = s.encode()
            out += struct.pack(">i", len(b)) + b
        rows.append(bytes(out))
    return rows


def _split_rows(body: bytes) -> list[bytes]:
    """Cut a body into rows by walking the field lengths."""
    rows, pos = [], 0
    while pos < len(body):
        start = pos
        (nfields,) = struct.unpack_from(">h", body, pos)
        pos += 2
        for _ in range(nfields):
            (size,) = struct.unpack_from(">i", body, pos)
            pos += 4 + size
        rows.append(body[start:pos])
    return rows


text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**40), 2**42),
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**15), 2**15 - 1),
            st.sampled_from(["a", "é-ü", "", "metric.long.name"]),
            text,
        ),
        min_size=1,
        max_size=40,
    )
)
def test_matches_the_reference_encoder(rows: list[tuple[int, float, int, str, str]]) -> None:
    ts, val, q, names, dev = (list(c) for c in zip(*rows, strict=True))
    result = encode_rows(
        [
            ("timestamptz_ms", np.array(ts, dtype=np.int64)),
            ("float8", np.array(val)),
            ("int2", np.array(q, dtype=np.int16)),
        ],
        [
            text_column(pl.Series(names, dtype=pl.String)),
            text_column(pl.Series(dev, dtype=pl.String)),
        ],
    )
    assert result.startswith(SIGNATURE)
    assert result.endswith(TRAILER)
    got = _split_rows(result[len(SIGNATURE) : -len(TRAILER)])
    expected = _reference_rows(ts, val, q, names, dev)
    assert sorted(got) == sorted(expected)  # rows are grouped by length, the set is the same
    if len({len(r) for r in expected}) == 1:
        assert got == expected  # one length: input order kept


def test_fixed_columns_only_and_dictionary_order() -> None:
    buf = encode_rows([("int4", np.array([1, -2], dtype=np.int32))], [])
    assert (
        buf
        == SIGNATURE
        + b"\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01"
        + b"\x00\x01\x00\x00\x00\x04\xff\xff\xff\xfe"
        + TRAILER
    )
    col = text_column(pl.Series(["b", "a", "b", "c"]))
    assert list(col.values) == ["b", "a", "c"]
    np.testing.assert_array_equal(col.codes, [0, 1, 0, 2])
