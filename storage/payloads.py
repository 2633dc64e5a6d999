"""Binary COPY payloads of the writer's batches (see :mod:`storage.pgbinary` for the format)."""

from __future__ import annotations

from typing import Any

import polars as pl
import psycopg

from storage.pgbinary import (
    SIGNATURE,
    TRAILER,
    FixedType,
    encode_body,
    encode_rows,
    text_column,
    text_rows,
)


class ReadingsPayload:
    """Readings as a binary COPY stream, encoded chunk by chunk while the server ingests the
    previous chunk (client and server work overlap); chunks are kept for a retry or fallback."""

    CHUNK_ROWS = 2_500

    def __init__(self, df: pl.DataFrame):
        self.rows = df.height
        self._fixed: list[tuple[FixedType, Any]] = [
            ("timestamptz_ms", df["ts_ms"].to_numpy()),
            ("float8", df["value"].to_numpy()),
            ("int8", df["seq"].to_numpy()),
            ("timestamptz_ms", df["received_at_ms"].to_numpy()),
            ("int2", df["quality"].to_numpy()),
        ]
        # combinations encoded once for the whole payload, not once per chunk
        self._text = text_rows([text_column(df[c]) for c in ("tenant", "device_id", "metric")])
        self._chunks: list[bytes] = []

    def _encode(self, start: int) -> bytes:
        stop = min(start + self.CHUNK_ROWS, self.rows)
        return encode_body(
            [(kind, values[start:stop]) for kind, values in self._fixed],
            self._text.slice(start, stop),
        )

    async def stream(self, copy: psycopg.AsyncCopy) -> None:
        """Write signature, rows and trailer to an open ``COPY ... FROM STDIN (FORMAT binary)``."""
        await copy.write(SIGNATURE)
        for i, start in enumerate(range(0, self.rows, self.CHUNK_ROWS)):
            if i == len(self._chunks):
                self._chunks.append(self._encode(start))
            await copy.write(self._chunks[i])
        await copy.write(TRAILER)


def windows_payload(df: pl.DataFrame) -> bytes:
    floats = ("actual", "baseline", "delta", "factor", "avoided_co2e_kg", "coverage")
    return encode_rows(
        [("timestamptz_ms", df["bucket_start_ms"].to_numpy()), ("int4", df["width_s"].to_numpy())]
        + [("float8", df[c].to_numpy()) for c in floats],
        [
            text_column(df[c])
            for c in ("tenant", "device_id", "metric", "baseline_model_id", "factor_id")
        ],
    )
