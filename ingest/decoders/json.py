"""Canonical JSON messages.

``{"device_id": ..., "readings": [{"metric", "ts" | "ts_ms", "value", "unit", "seq"}, ...]}``.

``device_id`` is optional and, when present, must equal the topic's device; each reading names its
time either as an RFC 3339 string ``ts`` or as UTC milliseconds ``ts_ms``.
"""

from __future__ import annotations

from typing import Any

from ingest.decoders.base import (
    BAD_SCHEMA,
    DecodeContext,
    Decoded,
    TopicInfo,
    is_number,
    parse_rfc3339,
    require_dict,
    strict_json,
)
from pilotstream.contracts import NO_SEQ
from pilotstream.errors import DecodeError


def decode(topic: TopicInfo, payload: bytes, ctx: DecodeContext) -> Decoded:
    """Readings of a canonical JSON message published on ``pilots/{tenant}/json/{device}``."""
    doc = require_dict(strict_json(payload, ctx), "the message")
    device = topic.device_id
    if doc.get("device_id", device) != device:
        raise DecodeError("device_id differs from the topic's device", reason=BAD_SCHEMA)
    readings = doc.get("readings")
    if not isinstance(readings, list):
        raise DecodeError("readings is not an array", reason=BAD_SCHEMA)
    out = Decoded(topic.device_id)
    for idx, rec in enumerate(readings):
        try:
            metric, ts_ms, value, unit, seq = _one(rec)
        except DecodeError as exc:
            out.reject(exc.reason, str(exc), idx)
            continue
        out.add(metric, ts_ms, value, unit, seq, idx)
    return out


def _one(rec: Any) -> tuple[str, float, float, str, int]:
    rec = require_dict(rec, "a reading")
    metric, value, unit, seq = (
        rec.get("metric"),
        rec.get("value"),
        rec.get("unit", ""),
        rec.get("seq", NO_SEQ),
    )
    if not isinstance(metric, str):
        raise DecodeError("metric is not a string", reason=BAD_SCHEMA)
    if not is_number(value):
        raise DecodeError("value is not a number", reason=BAD_SCHEMA)
    if not isinstance(unit, str):
        raise DecodeError("unit is not a string", reason=BAD_SCHEMA)
    if not isinstance(seq, int) or isinstance(seq, bool) or not -1 <= seq < 2**63:
        raise DecodeError("seq is not a 64-bit integer", reason=BAD_SCHEMA)
    if "ts_ms" in rec:
        ts_ms = rec["ts_ms"]
        if not is_number(ts_ms):
            raise DecodeError("ts_ms is not a number", reason=BAD_SCHEMA)
    elif "ts" in rec:
        ts_ms = parse_rfc3339(rec["ts"])
    else:
        raise DecodeError("a reading needs ts or ts_ms", reason=BAD_SCHEMA)
    return metric, float(ts_ms), float(value), unit, seq
