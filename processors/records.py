"""Readings-topic record values straight to reading columns, without a ReadingBatch per record.

Decoding a :class:`~pilotstream.contracts.ReadingBatch` builds a Python string per reading for its
metric, unit and kind, three quarters of the decode time (19 us of a 20-reading record); and
those columns almost always repeat one name. Here they are decoded as raw JSON (``msgspec.Raw``)
and looked up in a small cache keyed by their bytes: ``["kWh","kWh",...]`` is parsed once per
poll stream, not once per record. Numbers are decoded as before. The frame and the refusals are
the same as :func:`~pilotstream.codec.decode_batch` per record followed by
:func:`~processors.kernels.decode_batches` (a unit test compares them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain

import msgspec
import numpy as np
import polars as pl

from pilotstream.contracts import SCHEMA_VERSION
from processors.kernels.decode import READING_SCHEMA, empty_readings, per_batch_text

_NUL = b"\\u0000"  # JSON escapes a NUL in a string this way (a raw one is invalid JSON)
_TEXT_CACHE_MAX = 4096  # distinct text columns remembered (cleared when full)


class _Wire(msgspec.Struct, frozen=True, kw_only=True):
    """A ReadingBatch with its per-reading text columns left as raw JSON."""

    v: int = SCHEMA_VERSION  # encoding version
    tenant: str  # pilot id
    city: str  # city id
    device_id: str  # the Kafka key
    gateway_id: str  # forwarding gateway
    received_at_ms: int  # UTC ms when the gateway received the message
    metric: msgspec.Raw  # JSON list of metric names
    ts_ms: list[int]  # per reading: event time, UTC ms
    value: list[float]  # per reading: value in canonical unit
    unit: msgspec.Raw  # JSON list of units
    kind: msgspec.Raw  # JSON list of kinds
    seq: list[int]  # per reading: sequence number or NO_SEQ


_wire = msgspec.json.Decoder(_Wire)
_names = msgspec.json.Decoder(list[str])


class Refused(Exception):
    """A record that is not a reading batch of this schema version (the message says why)."""


class TextColumns:
    """Decoded text columns by their raw JSON bytes: (names, the one name or None)."""

    def __init__(self) -> None:
        self._known: dict[bytes, tuple[list[str], str | None]] = {}

    def get(self, raw: msgspec.Raw, field: str) -> tuple[list[str], str | None]:
        """The names of one raw JSON list; raises :class:`Refused` if it is not one."""
        key = bytes(raw)
        hit = self._known.get(key)
        if hit is not None:
            return hit
        try:
            names = _names.decode(key)
        except msgspec.DecodeError as exc:
            msg = f"not a reading batch: {exc} (in `{field}`)"
            raise Refused(msg) from exc
        head = names[0] if names and names.count(names[0]) == len(names) else None
        if len(self._known) >= _TEXT_CACHE_MAX:
            self._known.clear()
        self._known[key] = (names, head)
        return names, head


class Decoded:
    """The readings of some records as columns, in arrival order, plus what was refused."""

    def __init__(self) -> None:
        self.batches: list[_Wire] = []
        self.metrics: list[tuple[list[str], str | None]] = []
        self.kinds: list[tuple[list[str], str | None]] = []
        self.refused: list[tuple[int, str]] = []  # (record position, why)
        self.nul = False  # some record holds an escaped NUL

    def frame(self) -> pl.DataFrame:
        """The readings with the columns of :data:`~processors.kernels.decode.READING_SCHEMA`."""
        batches = self.batches
        if not batches:
            return empty_readings()
        lengths = np.fromiter(map(len, (b.ts_ms for b in batches)), np.int64, len(batches))
        n = int(lengths.sum())
        batch_of = np.repeat(np.arange(len(batches)), lengths)

        def per_batch(values: list[object], dtype: pl.DataType) -> pl.Series:
            return pl.Series(values, dtype=dtype).gather(batch_of)

        def text(columns: list[tuple[list[str], str | None]]) -> pl.Series:
            heads = [head for _, head in columns]
            if None not in heads:  # one name per record, the usual case
                return per_batch_text(heads, batch_of)  # type: ignore[arg-type]
            return pl.Series(list(chain.from_iterable(c for c, _ in columns)), dtype=pl.String())

        def numbers(
            lists: Iterable[list[int] | list[float]], dtype: type[np.generic]
        ) -> np.ndarray:
            return np.fromiter(chain.from_iterable(lists), dtype, n)

        return pl.DataFrame(
            {
                "tenant": per_batch_text([b.tenant for b in batches], batch_of),
                "device_id": per_batch([b.device_id for b in batches], pl.String()),
                "metric": text(self.metrics),
                "kind": text(self.kinds),
                "ts_ms": numbers((b.ts_ms for b in batches), np.int64),
                "value": numbers((b.value for b in batches), np.float64),
                "seq": numbers((b.seq for b in batches), np.int64),
                "received_at_ms": per_batch([b.received_at_ms for b in batches], pl.Int64()),
            },
            schema=READING_SCHEMA,
        )


def decode_records(values: Sequence[bytes], text: TextColumns) -> Decoded:
    """Decode readings-topic values (one loop per record, never per reading).

    A value that is not a reading batch of this schema version, or whose columns differ in
    length, is refused with the codec's message (the processor dead-letters it as ``bad_batch``).
    """
    out = Decoded()
    for i, value in enumerate(values):
        try:
            b = _wire.decode(value)
            if b.v != SCHEMA_VERSION:
                msg = f"unsupported schema version {b.v} (this build reads {SCHEMA_VERSION})"
                raise Refused(msg)
            metric, kind = text.get(b.metric, "metric"), text.get(b.kind, "kind")
            unit, _ = text.get(b.unit, "unit")
            n = len(b.ts_ms)
            if not (len(metric[0]) == len(b.value) == len(unit) == len(kind[0]) == len(b.seq) == n):
                msg = "reading batch columns have different lengths"
                raise Refused(msg)
        except msgspec.DecodeError as exc:
            out.refused.append((i, f"not a reading batch: {exc}"))
            continue
        except Refused as exc:
            out.refused.append((i, str(exc)))
            continue
        out.batches.append(b)
        out.metrics.append(metric)
        out.kinds.append(kind)
        out.nul = out.nul or _NUL in value
    return out
