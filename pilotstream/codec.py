"""Wire encoding of the contracts: strict JSON via msgspec, one encoder and decoder per type."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import msgspec

from pilotstream.contracts import SCHEMA_VERSION, ReadingBatch, Rejection, WindowDelta
from pilotstream.errors import DecodeError

_enc = msgspec.json.Encoder()
_batch_dec = msgspec.json.Decoder(ReadingBatch)
_batches_dec = msgspec.json.Decoder(list[ReadingBatch])
_rej_dec = msgspec.json.Decoder(Rejection)
_delta_dec = msgspec.json.Decoder(WindowDelta)


def encode(msg: ReadingBatch | Rejection | WindowDelta) -> bytes:
    """Encode any contract message as compact JSON bytes."""
    return _enc.encode(msg)


def decode_batch(data: bytes) -> ReadingBatch:
    """Decode a readings-topic value; raises DecodeError naming the problem."""
    try:
        batch = _batch_dec.decode(data)
    except msgspec.DecodeError as exc:
        msg = f"not a reading batch: {exc}"
        raise DecodeError(msg, reason="bad_batch") from exc
    _check_version(batch.v)
    n = len(batch.ts_ms)
    if not all(
        len(col) == n for col in (batch.metric, batch.value, batch.unit, batch.kind, batch.seq)
    ):
        msg = "reading batch columns have different lengths"
        raise DecodeError(msg, reason="bad_batch")
    return batch


def decode_rejection(data: bytes) -> Rejection:
    """Decode a rejected-topic value."""
    try:
        rej = _rej_dec.decode(data)
    except msgspec.DecodeError as exc:
        msg = f"not a rejection: {exc}"
        raise DecodeError(msg, reason="bad_batch") from exc
    _check_version(rej.v)
    return rej


def decode_delta(data: bytes) -> WindowDelta:
    """Decode a deltas-topic value."""
    try:
        d = _delta_dec.decode(data)
    except msgspec.DecodeError as exc:
        msg = f"not a window delta: {exc}"
        raise DecodeError(msg, reason="bad_batch") from exc
    _check_version(d.v)
    return d


def _check_version(v: int) -> None:
    if v != SCHEMA_VERSION:
        msg = f"unsupported schema version {v} (this build reads {SCHEMA_VERSION})"
        raise DecodeError(msg, reason="bad_version")


@cache
def json_schema(name: str) -> dict[str, Any]:
    """The shipped JSON Schema for a topic value: ``readings``, ``rejected`` or ``deltas``."""
    text = resources.files("pilotstream.schemas").joinpath(f"{name}.v1.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
