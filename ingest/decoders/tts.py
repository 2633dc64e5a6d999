"""The Things Stack v3 uplinks on ``pilots/{tenant}/tts/v3/{app}@{tts_tenant}/devices/{device}/up``.

Readings come from ``uplink_message.decoded_payload`` (``{metric: number}``, canonical units), time
from ``uplink_message.received_at`` (else the top-level ``received_at``), seq from ``f_cnt`` (absent
means 0: TTS omits zero fields), device from ``end_device_ids.device_id``. The application must
belong to the topic's tenant in the registry, else ``wrong_tenant``.
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

NETWORK = "tts"


def decode(topic: TopicInfo, payload: bytes, ctx: DecodeContext) -> Decoded:
    """Readings of one TTS v3 uplink."""
    doc = require_dict(strict_json(payload, ctx), "the uplink")
    ids = require_dict(doc.get("end_device_ids"), "end_device_ids")
    app = require_dict(ids.get("application_ids"), "end_device_ids.application_ids").get(
        "application_id"
    )
    check_application(NETWORK, app, topic.tenant, ctx)
    device = ids.get("device_id")
    if not isinstance(device, str) or device != topic.device_id:
        raise DecodeError(
            "end_device_ids.device_id differs from the topic's device", reason=BAD_SCHEMA
        )
    up = require_dict(doc.get("uplink_message"), "uplink_message")
    ts_ms = parse_rfc3339(up.get("received_at", doc.get("received_at")))
    seq = counter(up.get("f_cnt"), "f_cnt")
    if "decoded_payload" not in up:
        raise DecodeError(
            "uplink_message has no decoded_payload (no payload formatter)", reason=BAD_SCHEMA
        )
    out = Decoded(device)
    add_object(out, up["decoded_payload"], ts_ms, seq)
    return out
