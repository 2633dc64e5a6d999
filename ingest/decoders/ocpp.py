"""OCPP 1.6 ``MeterValues.req``, bare or wrapped as an OCPP-J CALL ``[2, id, "MeterValues", {}]``.

``sampledValue[].value`` is a string holding a decimal number; an absent measurand means
``Energy.Active.Import.Register`` and an absent unit ``Wh`` (OCPP 1.6 §7.31-7.34 defaults).
"""

from __future__ import annotations

import re
from typing import Any

from ingest.decoders.base import (
    BAD_SCHEMA,
    UNKNOWN_METRIC,
    DecodeContext,
    Decoded,
    TopicInfo,
    parse_rfc3339,
    require_dict,
    strict_json,
)
from pilotstream.contracts import NO_SEQ
from pilotstream.errors import DecodeError

MEASURANDS = {
    "Energy.Active.Import.Register": "energy.active.import",
    "Energy.Active.Export.Register": "energy.active.export",
    "Power.Active.Import": "power.active",
}
DEFAULT_MEASURAND = "Energy.Active.Import.Register"
DEFAULT_UNIT = "Wh"
CALL = 2  # OCPP-J message type id of a request
# A decimal number as OCPP writes it; float() alone would also take "nan", "inf" and "1_0".
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


def decode(topic: TopicInfo, payload: bytes, ctx: DecodeContext) -> Decoded:
    """Readings of a MeterValues request published on ``pilots/{tenant}/ocpp/{device}``."""
    doc = strict_json(payload, ctx)
    if isinstance(doc, list):
        if len(doc) != 4 or doc[0] != CALL or doc[2] != "MeterValues":
            raise DecodeError(
                'an OCPP-J frame must be [2, id, "MeterValues", {...}]', reason=BAD_SCHEMA
            )
        doc = doc[3]
    doc = require_dict(doc, "MeterValues.req")
    meter_values = doc.get("meterValue")
    if not isinstance(meter_values, list):
        raise DecodeError("meterValue is not an array", reason=BAD_SCHEMA)
    out = Decoded(topic.device_id)
    idx = -1
    for mv in meter_values:
        samples = mv.get("sampledValue") if isinstance(mv, dict) else None
        if not isinstance(samples, list):
            raise DecodeError("a meterValue needs a sampledValue array", reason=BAD_SCHEMA)
        ts_ms = parse_rfc3339(mv.get("timestamp"))
        for sv in samples:
            idx += 1  # records are numbered across all meterValues, in order
            try:
                metric, value, unit = _sample(sv)
            except DecodeError as exc:
                out.reject(exc.reason, str(exc), idx)
                continue
            out.add(metric, ts_ms, value, unit, NO_SEQ, idx)
    return out


def _sample(sv: Any) -> tuple[str, float, str]:
    sv = require_dict(sv, "a sampledValue")
    text = sv.get("value")
    if not isinstance(text, str) or not _DECIMAL.match(text):
        raise DecodeError(f"value {text!r} is not a decimal string", reason=BAD_SCHEMA)
    measurand = sv.get("measurand", DEFAULT_MEASURAND)
    metric = MEASURANDS.get(measurand) if isinstance(measurand, str) else None
    if metric is None:
        raise DecodeError(f"measurand {measurand!r} is not supported", reason=UNKNOWN_METRIC)
    unit = sv.get("unit", DEFAULT_UNIT)
    if not isinstance(unit, str):
        raise DecodeError("unit is not a string", reason=BAD_SCHEMA)
    return metric, float(text), unit
