"""A minimal reference parser of the five MQTT payload formats, written from the contract.

It exists to check the encoders (round trips in tests) and to read recorded feeds; the gateway has
its own, stricter decoders in ``ingest/decoders``. Strict JSON (msgspec): NaN, Infinity, broken
syntax raise; non-finite numbers (``1e400``) raise too. Returns readings in canonical units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from pilotstream.registry import Registry
from pilotstream.vocab import to_canonical

OCPP_METRICS = {
    "Energy.Active.Import.Register": "energy.active.import",
    "Power.Active.Import": "power.active",
}
MAX_DEPTH = 16
MAX_BYTES = 256 * 1024  # the gateway's default payload limit


class ReferenceError_(ValueError):  # noqa: N801 (trailing underscore: not the builtin)
    """The payload does not follow the contract."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """One reading as the reference parser reads it."""

    tenant: str
    device_id: str
    metric: str
    ts_ms: int
    value: float  # canonical unit
    seq: int  # -1 when the format has none


def parse(topic: str, payload: bytes, registry: Registry | None = None) -> list[Parsed]:
    """Readings of one MQTT message; raises ReferenceError_ naming what is wrong."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "pilots":
        msg = f"not a pilot topic: {topic}"
        raise ReferenceError_(msg)
    tenant, fmt = parts[1], parts[2]
    doc = _strict(payload)
    if fmt == "json":
        return _json(tenant, parts[3], doc)
    if fmt == "senml":
        return _senml(tenant, parts[3], doc)
    if fmt == "ocpp":
        return _ocpp(tenant, parts[3], doc)
    if fmt == "tts":
        return _tts(tenant, parts, doc, registry)
    if fmt == "chirpstack":
        return _chirpstack(tenant, parts, doc, registry)
    msg = f"unknown format {fmt}"
    raise ReferenceError_(msg)


def _strict(payload: bytes) -> Any:
    if len(payload) > MAX_BYTES:
        msg = f"payload of {len(payload)} bytes is larger than {MAX_BYTES}"
        raise ReferenceError_(msg)
    try:
        doc = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise ReferenceError_(f"bad json: {exc}") from exc
    _check(doc, 0)
    return doc


def _check(node: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ReferenceError_("too deep")
    if isinstance(node, float) and not math.isfinite(node):
        raise ReferenceError_("non-finite number")
    if isinstance(node, dict):
        for v in node.values():
            _check(v, depth + 1)
    elif isinstance(node, list):
        for v in node:
            _check(v, depth + 1)


def _num(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ReferenceError_(f"not a number: {x!r}")
    return float(x)


def _ms(iso: Any) -> int:
    if not isinstance(iso, str):
        raise ReferenceError_(f"not a timestamp: {iso!r}")
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _json(tenant: str, device: str, doc: Any) -> list[Parsed]:
    if not isinstance(doc, dict) or not isinstance(doc.get("readings"), list):
        raise ReferenceError_("json: readings must be a list")
    out = []
    for r in doc["readings"]:
        ts = r["ts_ms"] if "ts_ms" in r else _ms(r.get("ts"))
        value = to_canonical(_num(r["value"]), r["unit"], r["metric"])
        out.append(Parsed(tenant, device, r["metric"], int(ts), value, int(r.get("seq", -1))))
    return out


def resolve_senml(pack: Any) -> list[tuple[str, float, str, float]]:
    """Resolve a SenML pack per RFC 8428 section 4.6: (name, time, unit, value) per record.

    Base fields apply to their record and every later one until set again; name = bn + n,
    time = bt + t, value = bv + v, unit = u or else bu. Labels ending in ``_`` are refused.
    """
    if not isinstance(pack, list):
        raise ReferenceError_("senml: a pack is an array")
    bn, bt, bu, bv = "", 0.0, "", 0.0
    out = []
    for rec in pack:
        if not isinstance(rec, dict) or any(k.endswith("_") for k in rec):
            raise ReferenceError_("senml: bad record or label ending in _")
        bn = rec.get("bn", bn)
        bt = _num(rec.get("bt", bt))
        bu = rec.get("bu", bu)
        bv = _num(rec.get("bv", bv))
        out.append(
            (
                str(bn) + str(rec.get("n", "")),
                bt + _num(rec.get("t", 0.0)),
                str(rec.get("u", bu)),
                bv + _num(rec["v"]),
            )
        )
    return out


def _senml(tenant: str, device: str, doc: Any) -> list[Parsed]:
    out = []
    for name, t, unit, v in resolve_senml(doc):
        if t < 2**28:
            raise ReferenceError_("senml: relative-to-now times are not produced by the simulators")
        metric = name.replace("/", ":").rsplit(":", 1)[-1]
        out.append(
            Parsed(tenant, device, metric, round(t * 1000), to_canonical(v, unit, metric), -1)
        )
    return out


def _ocpp(tenant: str, device: str, doc: Any) -> list[Parsed]:
    if isinstance(doc, list):
        if len(doc) != 4 or doc[0] != 2 or doc[2] != "MeterValues":
            raise ReferenceError_("ocpp: not a MeterValues CALL")
        doc = doc[3]
    if not isinstance(doc, dict) or not isinstance(doc.get("meterValue"), list):
        raise ReferenceError_("ocpp: meterValue must be a list")
    out = []
    for mv in doc["meterValue"]:
        ts = _ms(mv["timestamp"])
        for sv in mv["sampledValue"]:
            if not isinstance(sv.get("value"), str):
                raise ReferenceError_("ocpp: value must be a string")
            raw = float(sv["value"])
            if not math.isfinite(raw):
                raise ReferenceError_("ocpp: non-finite value")
            metric = OCPP_METRICS[sv.get("measurand", "Energy.Active.Import.Register")]
            value = to_canonical(raw, sv.get("unit", "Wh"), metric)
            out.append(Parsed(tenant, device, metric, ts, value, -1))
    return out


def _flat(tenant: str, device: str, obj: Any, ts: int, seq: int) -> list[Parsed]:
    if not isinstance(obj, dict):
        raise ReferenceError_("decoded payload must be an object")
    return [Parsed(tenant, device, m, ts, _num(v), seq) for m, v in obj.items()]


def _tts(tenant: str, parts: list[str], doc: Any, registry: Registry | None) -> list[Parsed]:
    app = parts[4].split("@", 1)[0]
    ids = doc["end_device_ids"]
    if ids["application_ids"]["application_id"] != app:
        raise ReferenceError_("tts: application differs from topic")
    if registry is not None and registry.lorawan.get(("tts", app)) != tenant:
        raise ReferenceError_("tts: wrong_tenant")
    up = doc["uplink_message"]
    ts = _ms(up.get("received_at", doc.get("received_at")))
    return _flat(tenant, ids["device_id"], up["decoded_payload"], ts, int(up.get("f_cnt", 0)))


def _chirpstack(tenant: str, parts: list[str], doc: Any, registry: Registry | None) -> list[Parsed]:
    info = doc["deviceInfo"]
    app = info["applicationId"]
    if app != parts[4]:
        raise ReferenceError_("chirpstack: application differs from topic")
    if registry is not None and registry.lorawan.get(("chirpstack", app)) != tenant:
        raise ReferenceError_("chirpstack: wrong_tenant")
    return _flat(
        tenant, info["devEui"], doc.get("object"), _ms(doc["time"]), int(doc.get("fCnt", 0))
    )
