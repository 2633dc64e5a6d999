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

import msgspec
import msgspec.structs

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
    """Readings of a SenML pack published on ``pilots/{tenant}/senml/{device}``.

    Plain packs take a fast path (typed msgspec decoding, no intermediate objects); anything
    unusual (unknown or ``_`` labels, nulls, escapes, nesting, wrong types, bad JSON) takes the
    general path, which names the exact reason. Both give the same readings.
    """
    out = Decoded(topic.device_id)
    now_s = ctx.received_at_ms / 1000.0
    recs = _fast_pack(payload) if len(payload) <= ctx.max_bytes else None
    if recs is not None:
        _decode_fast(recs, now_s, out)
        return out
    for idx, r in enumerate(resolve(strict_json(payload, ctx), now_s)):
        if isinstance(r, BadRecordError):
            out.reject(BAD_SENML, str(r), idx)
        else:
            values = sum(x is not None for x in (r.string_value, r.bool_value, r.data_value))
            _emit(out, idx, r.name, r.time, r.unit, r.value, r.sum, values)
    return out


class _Rec(msgspec.Struct):
    """A SenML record as typed fields: the fast path's decoding target."""

    bn: str | None = None
    bt: float | None = None
    bu: str | None = None
    bv: float | None = None
    bs: float | None = None
    bver: int | None = None
    n: str | None = None
    u: str | None = None
    v: float | None = None
    vs: str | None = None
    vb: bool | None = None
    vd: str | None = None
    s: float | None = None
    t: float | None = None
    ut: float | None = None


_N_FIELDS = len(_Rec.__struct_fields__)
_pack_decoder = msgspec.json.Decoder(list[_Rec])
# Anything the fast path cannot judge exactly: a label ending in "_", a key separator with space,
# an escaped quote (which could hide '":' inside a string).
_NOT_PLAIN = re.compile(rb'_"\s*:|"\s+:|\\"')


def _fast_pack(payload: bytes) -> list[tuple[Any, ...]] | None:
    """The pack's records as field tuples (``_Rec`` order), or None for the general path."""
    if payload.count(b"[") != 1 or _NOT_PLAIN.search(payload):
        return None
    try:
        recs = _pack_decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return None
    rows = list(map(msgspec.structs.astuple, recs))
    # Every key is followed by '":' here; fewer set fields means a duplicate, unknown or null key.
    keys = sum(_N_FIELDS - row.count(None) for row in rows)
    return rows if keys == payload.count(b'":') and rows else None


_names: dict[str, str] = {}  # resolved name -> metric ("" when the name is invalid)


def _metric_of_name(name: str) -> str:
    metric = _names.get(name)
    if metric is None:
        metric = metric_of(name) if _NAME.match(name) else ""
        if len(_names) < 50_000:  # bounded: names repeat, devices do not grow without end
            _names[name] = metric
    return metric


def _decode_fast(rows: list[tuple[Any, ...]], now_s: float, out: Decoded) -> None:
    """RFC 8428 resolution over field tuples; the same rules as :func:`resolve` + :func:`_emit`,
    inlined for the common record (a number, maybe base fields, no sum)."""
    bn, bt, bu, bv, bs = "", 0.0, None, 0.0, 0.0
    metrics, times, values, units, indices = (
        out.metric, out.ts_ms, out.value, out.unit, out.record_index,
    )  # fmt: skip
    for idx, (b_n, b_t, b_u, b_v, b_s, bver, n, u, v, vs, vb, vd, s, t, _ut) in enumerate(rows):
        if b_n is not None or b_t is not None or b_u is not None or b_v is not None:
            bn = bn if b_n is None else b_n
            bt = bt if b_t is None else b_t
            bu = bu if b_u is None else b_u
            bv = bv if b_v is None else b_v
        if b_s is not None:
            bs = b_s
        if bver is not None and bver > SUPPORTED_VERSION:
            out.reject(BAD_SENML, f"bver {bver} is newer than {SUPPORTED_VERSION}", idx)
            continue
        name = bn if n is None else bn + n
        time = bt if t is None else bt + t
        if time < RELATIVE_LIMIT_S:
            time += now_s
        unit = bu if u is None else u
        if v is not None and s is None and vs is None and vb is None and vd is None:
            metric = _metric_of_name(name)
            if not metric:
                out.reject(BAD_SENML, f"name {name!r} is not a valid SenML name", idx)
                continue
            metrics.append(metric)
            times.append(time * 1000.0)
            values.append(bv + v)
            units.append(unit or "")
            indices.append(idx)
            out.seq.append(NO_SEQ)
            continue
        if not _NAME.match(name):
            out.reject(BAD_SENML, f"name {name!r} is not a valid SenML name", idx)
            continue
        others = (vs is not None) + (vb is not None) + (vd is not None)
        value = None if v is None else bv + v
        total = None if s is None else bs + s
        _emit(out, idx, name, time, unit, value, total, others)


def _emit(
    out: Decoded,
    idx: int,
    name: str,
    time: float,
    unit: str | None,
    value: float | None,
    total: float | None,
    others: int,
) -> None:
    """Map one resolved record to a reading (or a refusal)."""
    if others + (value is not None) > 1 or (others == 0 and value is None and total is None):
        out.reject(BAD_SENML, "a record carries exactly one value and/or a sum", idx)
        return
    metric = metric_of(name)
    if total is not None and (value is None or _is_energy(metric)):
        energy = _sum_as_energy(total, unit)
        if energy is None:
            out.reject(BAD_UNIT, f"a sum in {unit!r} is not an energy", idx)
        else:
            out.add(metric, time * 1000.0, energy, "kWh", NO_SEQ, idx)
    elif value is not None:
        out.add(metric, time * 1000.0, value, unit or "", NO_SEQ, idx)
    else:
        out.reject(BAD_SCHEMA, "string, boolean and data values are not readings", idx)


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
