"""SenML (RFC 8428) packs: resolution per the RFC, then records mapped to readings.

Resolution (:func:`resolve`) is the RFC's own step, kept separate so tests check it against the
RFC's examples: base fields carry forward until set again, name = bn + n, time = bt + t (a time
below 2**28 is relative to the receive time), value = bv + v, sum = bs + s, unit = u or bu. Labels
ending in ``_`` are must-understand extensions this gateway does not know: the record is refused.

Mapping (:func:`decode`): metric = the part of the resolved name after its last ``:`` or ``/``,
device = the topic's device. A record with a sum and a power unit (``W``, ``kW``...) is energy in
unit-seconds (W s = J) and becomes kWh; a sum in an energy unit is taken as that energy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ingest.decoders.base import (
    BAD_SCHEMA,
    BAD_SENML,
    BAD_UNIT,
    DecodeContext,
    Decoded,
    TopicInfo,
    is_number,
    strict_json,
)
from pilotstream.contracts import NO_SEQ
from pilotstream.errors import DecodeError
from pilotstream.vocab import METRICS, UNITS

RELATIVE_LIMIT_S = 2**28  # RFC 8428 §4.5.3: times below this are relative to now
SUPPORTED_VERSION = 10  # RFC 8428 §4.4
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*\Z")
_BASE = ("bn", "bt", "bu", "bv", "bs", "bver")


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolved SenML record (RFC 8428 §4.6): every field absolute, no base fields."""

    name: str  # bn + n
    time: float  # absolute, seconds since the Unix epoch
    unit: str | None = None  # u, else bu
    value: float | None = None  # bv + v
    string_value: str | None = None  # vs
    bool_value: bool | None = None  # vb
    data_value: str | None = None  # vd (base64url, left encoded)
    sum: float | None = None  # bs + s, unit x seconds


class BadRecordError(ValueError):
    """A record that cannot be resolved; the pack goes on."""


def resolve(pack: Any, now_s: float) -> list[Resolved | BadRecordError]:
    """Resolve a pack record by record; a bad record yields a :class:`BadRecordError` in its place.

    Raises DecodeError(bad_senml) when the pack as a whole is not a SenML pack.
    """
    if not isinstance(pack, list) or not pack:
        raise DecodeError("a SenML pack is a non-empty array of records", reason=BAD_SENML)
    base: dict[str, Any] = {"bn": "", "bt": 0.0, "bu": None, "bv": 0.0, "bs": 0.0}
    out: list[Resolved | BadRecordError] = []
    for rec in pack:
        try:
            out.append(_resolve_one(rec, base, now_s))
        except BadRecordError as exc:
            out.append(exc)
    return out


def _resolve_one(rec: Any, base: dict[str, Any], now_s: float) -> Resolved:
    if not isinstance(rec, dict):
        raise BadRecordError("a record is not an object")
    must = [k for k in rec if k.endswith("_")]
    if must:
        raise BadRecordError(f"must-understand label {must[0]!r} is not supported")
    for key in _BASE:  # base fields first: they apply to this record too
        if key in rec:
            val = rec[key]
            ok = isinstance(val, str) if key in ("bn", "bu") else is_number(val)
            if not ok:
                raise BadRecordError(f"{key} has the wrong type")
            if key == "bver" and val > SUPPORTED_VERSION:
                raise BadRecordError(f"bver {val} is newer than {SUPPORTED_VERSION}")
            base[key] = val
    n = rec.get("n", "")
    if not isinstance(n, str):
        raise BadRecordError("n is not a string")
    name = base["bn"] + n
    if not _NAME.match(name):
        raise BadRecordError(f"name {name!r} is not a valid SenML name")
    t = rec.get("t", 0.0)
    if not is_number(t):
        raise BadRecordError("t is not a number")
    time = base["bt"] + t
    if time < RELATIVE_LIMIT_S:
        time = now_s + time
    unit = rec.get("u", base["bu"])
    if unit is not None and not isinstance(unit, str):
        raise BadRecordError("u is not a string")
    fields: dict[str, Any] = {}
    if "v" in rec:
        if not is_number(rec["v"]):
            raise BadRecordError("v is not a number")
        fields["value"] = base["bv"] + rec["v"]
    for key, attr, typ in (("vs", "string_value", str), ("vb", "bool_value", bool)):
        if key in rec:
            if not isinstance(rec[key], typ):
                raise BadRecordError(f"{key} has the wrong type")
            fields[attr] = rec[key]
    if "vd" in rec:
        if not isinstance(rec["vd"], str):
            raise BadRecordError("vd is not a string")
        fields["data_value"] = rec["vd"]
    if "s" in rec:
        if not is_number(rec["s"]):
            raise BadRecordError("s is not a number")
        fields["sum"] = base["bs"] + rec["s"]
    values = sum(k in fields for k in ("value", "string_value", "bool_value", "data_value"))
    if values > 1 or (values == 0 and "sum" not in fields):
        raise BadRecordError("a record carries exactly one value and/or a sum")
    return Resolved(name=name, time=float(time), unit=unit, **fields)


def metric_of(name: str) -> str:
    """The metric of a resolved name: what follows its last ':' or '/'."""
    return name[max(name.rfind(":"), name.rfind("/")) + 1 :]


def decode(topic: TopicInfo, payload: bytes, ctx: DecodeContext) -> Decoded:
    """Readings of a SenML pack published on ``pilots/{tenant}/senml/{device}``."""
    pack = strict_json(payload, ctx)
    out = Decoded()
    device = topic.device_id
    for idx, r in enumerate(resolve(pack, ctx.received_at_ms / 1000.0)):
        if isinstance(r, BadRecordError):
            out.reject(BAD_SENML, str(r), idx, device)
            continue
        metric = metric_of(r.name)
        ts_ms = r.time * 1000.0
        if r.sum is not None and (r.value is None or _is_energy(metric)):
            energy = _sum_as_energy(r.sum, r.unit)
            if energy is None:
                out.reject(BAD_UNIT, f"a sum in {r.unit!r} is not an energy", idx, device)
                continue
            out.add(device, metric, ts_ms, energy, "kWh", NO_SEQ, idx)
        elif r.value is not None:
            out.add(device, metric, ts_ms, r.value, r.unit or "", NO_SEQ, idx)
        else:
            out.reject(BAD_SCHEMA, "string, boolean and data values are not readings", idx, device)
    return out


def _is_energy(metric: str) -> bool:
    spec = METRICS.get(metric)
    return spec is not None and spec.unit == "kWh"


def _sum_as_energy(total: float, unit: str | None) -> float | None:
    """Energy in kWh of a sum: power unit x seconds (W s = J), or an energy unit as is."""
    entry = UNITS.get(unit or "")
    if entry is None:
        return None
    canonical, scale, _ = entry
    if canonical == "kW":
        return total * scale / 3600.0
    if canonical == "kWh":
        return total * scale
    return None
