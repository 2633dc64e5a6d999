"""Payload decoders, one pure module per format, and :func:`decode_message` which never raises."""

from __future__ import annotations

from ingest.decoders import chirpstack, ocpp, senml, tts
from ingest.decoders import json as canonical_json
from ingest.decoders.base import (
    BAD_SCHEMA,
    REASONS,
    DecodeContext,
    Decoded,
    Decoder,
    RecordReject,
    TopicInfo,
    parse_topic,
)
from pilotstream.errors import DecodeError
from pilotstream.logs import get_logger

DECODERS: dict[str, Decoder] = {
    "json": canonical_json.decode,
    "senml": senml.decode,
    "ocpp": ocpp.decode,
    "tts": tts.decode,
    "chirpstack": chirpstack.decode,
}

_log = get_logger(__name__)


class RejectedMessageError(DecodeError):
    """The whole message was refused; ``topic_info`` is set when the topic itself was fine."""

    def __init__(self, msg: str, *, reason: str, topic_info: TopicInfo | None) -> None:
        super().__init__(msg, reason=reason)
        self.topic_info = topic_info


def decode_message(topic: str, payload: bytes, ctx: DecodeContext) -> tuple[TopicInfo, Decoded]:
    """Decode one MQTT message; every failure becomes :class:`RejectedMessageError` with a reason.

    Unexpected exceptions from a decoder are logged and refused as ``bad_schema``: a malformed
    payload must never take the gateway down.
    """
    info: TopicInfo | None = None
    try:
        info = parse_topic(topic)
        return info, DECODERS[info.fmt](info, payload, ctx)
    except DecodeError as exc:
        raise RejectedMessageError(str(exc), reason=exc.reason, topic_info=info) from exc
    except Exception as exc:  # a decoder bug must not crash the gateway; the letter keeps bytes
        _log.error("decoder_failed", topic=topic, exc=True)
        msg = f"decoder failed: {type(exc).__name__}"
        raise RejectedMessageError(msg, reason=BAD_SCHEMA, topic_info=info) from exc


__all__ = [
    "DECODERS",
    "REASONS",
    "DecodeContext",
    "Decoded",
    "RecordReject",
    "RejectedMessageError",
    "TopicInfo",
    "decode_message",
    "parse_topic",
]
