"""ChirpStack v4 uplink events.

Topic: ``pilots/{tenant}/chirpstack/application/{app}/device/{devEui}/event/up``.

Readings come from ``object`` (``{metric: number}``, canonical units; present only when the device
profile has a codec), time from ``time``, seq from ``fCnt``, device from ``deviceInfo.devEui``. The
application ``deviceInfo.applicationId`` must belong to the topic's tenant, else ``wrong_tenant``.
"""

from __future__ import annotations

from ingest.decoders.base import (
    BAD_SCHEMA,
    DecodeContext,
    Decoded,
    TopicInfo,
    parse_rfc3339,
    require_dict,
    strict_json,
)
from ingest.decoders.lorawan import add_object, check_application, counter
from pilotstream.errors import DecodeError

NETWORK = "chirpstack"


def decode(topic: TopicInfo, payload: bytes, ctx: DecodeContext) -> Decoded:
    """Readings of one ChirpStack v4 uplink event."""
    doc = require_dict(strict_json(payload, ctx), "the uplink event")
    info = require_dict(doc.get("deviceInfo"), "deviceInfo")
    check_application(NETWORK, info.get("applicationId"), topic.tenant, ctx)
    dev_eui = info.get("devEui")
    if not isinstance(dev_eui, str) or dev_eui.lower() != topic.device_id.lower():
        raise DecodeError("deviceInfo.devEui differs from the topic's device", reason=BAD_SCHEMA)
    ts_ms = parse_rfc3339(doc.get("time"))
    seq = counter(doc.get("fCnt"), "fCnt")
    if "object" not in doc:
        raise DecodeError("the event has no decoded object (no codec)", reason=BAD_SCHEMA)
    out = Decoded(dev_eui)
    add_object(out, doc["object"], ts_ms, seq)
    return out
