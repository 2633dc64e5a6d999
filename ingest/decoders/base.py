"""The decoder contract: topic + payload bytes -> reading columns and per-record rejections.

Every decoder is a pure function ``decode(topic, payload, ctx) -> Decoded``. A problem with the
whole message raises :class:`~pilotstream.errors.DecodeError` whose ``reason`` is the dead-letter
code; a problem with one record of a pack lands in ``Decoded.rejects`` and the other records go on.

Units are left as the payload wrote them (plus the SenML sum conversion); validation converts them
to canonical units once, vectorised, in :mod:`ingest.validate`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec

from pilotstream.errors import DecodeError
from pilotstream.topics import MQTT_ROOT

# Dead-letter reason codes of the gateway.
BAD_JSON = "bad_json"
NON_FINITE = "non_finite"
TOO_DEEP = "too_deep"
TOO_LARGE = "too_large"
DUPLICATE_KEY = "duplicate_key"
BAD_SCHEMA = "bad_schema"
UNKNOWN_METRIC = "unknown_metric"
BAD_UNIT = "bad_unit"
BAD_DEVICE_ID = "bad_device_id"
FUTURE_TS = "future_ts"
TOO_OLD = "too_old"
WRONG_TENANT = "wrong_tenant"
UNKNOWN_FORMAT = "unknown_format"
BAD_SENML = "bad_senml"
REASONS = (
    BAD_JSON,
    NON_FINITE,
    TOO_DEEP,
    TOO_LARGE,
    DUPLICATE_KEY,
    BAD_SCHEMA,
    UNKNOWN_METRIC,
    BAD_UNIT,
    BAD_DEVICE_ID,
    FUTURE_TS,
    TOO_OLD,
    WRONG_TENANT,
    UNKNOWN_FORMAT,
    BAD_SENML,
)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What the MQTT topic says: tenant, format, device (and LoRaWAN application)."""

    topic: str  # the full MQTT topic
    tenant: str  # second segment, the only source of the tenant
    fmt: str  # json | senml | ocpp | tts | chirpstack
    device_id: str  # device named by the topic ("" when the topic names none)
    application: str = ""  # LoRaWAN application of tts / chirpstack topics


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What a decoder may know besides the bytes."""

    received_at_ms: int  # UTC ms when the gateway received the message
    lorawan: Mapping[tuple[str, str], str]  # (network, application) -> tenant
    max_depth: int = 16  # deepest bracket nesting accepted
    max_bytes: int = 256 * 1024  # largest payload accepted


@dataclass(slots=True)
class RecordReject:
    """One refused record of a pack."""

    reason: str  # reason code
    detail: str  # human-readable why
    record_index: int  # index inside the pack
    device_id: str = ""  # when known


@dataclass(slots=True)
class Decoded:
    """Readings of one message (all of one device) as parallel columns, plus refused records."""

    device_id: str = ""  # the device every reading of the message belongs to
    metric: list[str] = field(default_factory=list)
    ts_ms: list[float] = field(default_factory=list)  # event time, UTC ms (float until validated)
    value: list[float] = field(default_factory=list)  # value in ``unit``
    unit: list[str] = field(default_factory=list)  # unit as sent ("" = the metric's canonical)
    seq: list[int] = field(default_factory=list)  # sequence number, -1 when none
    record_index: list[int] = field(default_factory=list)  # index of the source record
    rejects: list[RecordReject] = field(default_factory=list)

    def add(self, metric: str, ts_ms: float, value: float, unit: str, seq: int, idx: int) -> None:
        """Append one reading."""
        self.metric.append(metric)
        self.ts_ms.append(ts_ms)
        self.value.append(value)
        self.unit.append(unit)
        self.seq.append(seq)
        self.record_index.append(idx)

    def reject(self, reason: str, detail: str, idx: int) -> None:
        """Refuse one record."""
        self.rejects.append(RecordReject(reason, detail, idx, self.device_id))

    def __len__(self) -> int:
        return len(self.ts_ms)


class Decoder(Protocol):
    """A payload format."""

    def __call__(self, topic: TopicInfo, payload: bytes, ctx: DecodeContext) -> Decoded: ...


def parse_topic(topic: str) -> TopicInfo:
    """Split a gateway topic; raises DecodeError(unknown_format) when it fits no scheme."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != MQTT_ROOT or not parts[1]:
        raise DecodeError(
            f"topic {topic!r} is not under {MQTT_ROOT}/{{tenant}}/", reason=UNKNOWN_FORMAT
        )
    tenant, fmt, rest = parts[1], parts[2], parts[3:]
    if fmt in ("json", "senml", "ocpp") and len(rest) == 1:
        return TopicInfo(topic, tenant, fmt, rest[0])
    # tts/v3/{app}@{tts_tenant}/devices/{device}/up
    if (
        fmt == "tts"
        and len(rest) == 5
        and rest[0] == "v3"
        and rest[2] == "devices"
        and rest[4] == "up"
    ):
        return TopicInfo(topic, tenant, fmt, rest[3], rest[1].split("@", 1)[0])
    # chirpstack/application/{app}/device/{dev_eui}/event/up
    if (
        fmt == "chirpstack"
        and len(rest) == 6
        and (rest[0], rest[2], rest[4], rest[5]) == ("application", "device", "event", "up")
    ):
        return TopicInfo(topic, tenant, fmt, rest[3], rest[1])
    raise DecodeError(f"topic {topic!r} names no known format", reason=UNKNOWN_FORMAT)


# A JSON string, escapes included (unrolled loop: fast in the C regex engine).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")
_NON_FINITE_TOKEN = re.compile(rb"NaN|Infinity")
_decoder = msgspec.json.Decoder()


def strict_json(payload: bytes, ctx: DecodeContext) -> Any:
    """Parse JSON strictly: size and depth checked before parsing, then NaN/Infinity/overflow
    (``non_finite``), duplicate keys (``duplicate_key``) and malformed input (``bad_json``)."""
    if len(payload) > ctx.max_bytes:
        raise DecodeError(f"{len(payload)} bytes > limit {ctx.max_bytes}", reason=TOO_LARGE)
    bare = _STRING.sub(b'""', payload)  # structure only: strings cannot fool the scans below
    opens = bare.count(b"[") + bare.count(b"{")
    if opens > ctx.max_depth and _depth(bare) > ctx.max_depth:
        raise DecodeError(f"nesting deeper than {ctx.max_depth}", reason=TOO_DEEP)
    try:
        obj = _decoder.decode(payload)
    except msgspec.ValidationError as exc:  # msgspec's word for a number out of float range
        raise DecodeError(f"number out of range: {exc}", reason=NON_FINITE) from exc
    except msgspec.DecodeError as exc:
        reason = NON_FINITE if _NON_FINITE_TOKEN.search(bare) else BAD_JSON
        raise DecodeError(f"malformed JSON: {exc}", reason=reason) from exc
    # Every key is followed by one ':' outside strings; fewer keys decoded means a duplicate.
    if bare.count(b":") != _count_keys(obj):
        raise DecodeError("an object repeats a key", reason=DUPLICATE_KEY)
    return obj


def _depth(bare: bytes) -> int:
    depth = deepest = 0
    for m in _BRACKETS.finditer(bare):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _count_keys(obj: Any) -> int:
    if isinstance(obj, dict):
        n = len(obj)
        for v in obj.values():
            if isinstance(v, dict | list):
                n += _count_keys(v)
        return n
    if isinstance(obj, list):
        return sum(_count_keys(v) for v in obj if isinstance(v, dict | list))
    return 0


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_rfc3339(text: Any) -> float:
    """UTC ms of an RFC 3339 timestamp with a zone (``Z`` or offset); digits beyond µs are cut."""
    if not isinstance(text, str):
        raise DecodeError(f"timestamp {text!r} is not a string", reason=BAD_SCHEMA)
    try:
        dt = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("z", "Z")))
    except ValueError as exc:
        raise DecodeError(f"timestamp {text!r} is not RFC 3339", reason=BAD_SCHEMA) from exc
    if dt.tzinfo is None:
        raise DecodeError(f"timestamp {text!r} has no time zone", reason=BAD_SCHEMA)
    return dt.timestamp() * 1000.0


def is_number(x: Any) -> bool:
    """A JSON number (bool is not one)."""
    return isinstance(x, int | float) and not isinstance(x, bool)


def require_dict(obj: Any, what: str) -> dict[str, Any]:
    """The object, or DecodeError(bad_schema)."""
    if not isinstance(obj, dict):
        raise DecodeError(f"{what} is not an object", reason=BAD_SCHEMA)
    return obj
