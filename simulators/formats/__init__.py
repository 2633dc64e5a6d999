"""Payload encoders: readings -> MQTT messages (topic, payload, message id) per format.

Every encoder is vectorised: JSON fragments are built for all readings with polars string
expressions and joined per message, so a large feed is encoded without a per-reading Python loop.
Formats and topics follow the contract between simulators and gateway (``pilotstream.topics``).
"""

from __future__ import annotations

import polars as pl

from pilotstream.vocab import METRICS
from simulators.formats.lorawan import encode_chirpstack, encode_tts
from simulators.formats.simple import encode_json, encode_ocpp, encode_senml

LORAWAN = ("tts", "chirpstack")  # one uplink per timestamp, values in canonical units

ENCODERS = {
    "json": encode_json,
    "senml": encode_senml,
    "ocpp": encode_ocpp,
    "tts": encode_tts,
    "chirpstack": encode_chirpstack,
}

MESSAGE_SCHEMA = {
    "msg_id": pl.String,  # unique per run: f"{device_id}:{slot}"
    "user": pl.String,  # MQTT user that publishes it (the tenant, or another for wrong_tenant)
    "tenant": pl.String,  # owner of the device
    "device_id": pl.String,
    "fmt": pl.String,
    "topic": pl.String,
    "payload": pl.String,
    "ts_ms": pl.Int64,  # latest event time in the message, UTC ms
    "n_readings": pl.UInt32,
}


def send_unit(fmt: str, metric: str, group_unit: str) -> str:
    """Unit a device of ``fmt`` sends ``metric`` in: the group's energy unit, W for OCPP power, or
    the canonical unit (always canonical for LoRaWAN decoded payloads)."""
    canonical = METRICS[metric].unit
    if fmt in LORAWAN:
        return canonical
    if fmt == "ocpp":
        return {"kWh": "Wh", "kW": "W"}.get(canonical, canonical)
    if group_unit and canonical == "kWh":
        return group_unit
    return canonical


def encode_messages(readings: pl.DataFrame) -> pl.DataFrame:
    """Encode readings (with ``slot`` and ``msg_id`` columns) into messages, one row each.

    Readings of one message share (device_id, slot); the result has the columns of
    :data:`MESSAGE_SCHEMA`, ordered by device and slot.
    """
    parts = []
    for fmt, enc in ENCODERS.items():
        sub = readings.filter(pl.col("fmt") == fmt)
        if sub.height:
            ordered = sub.sort(["device_id", "slot", "ts_ms", "metric"], maintain_order=True)
            parts.append(enc(ordered).select(list(MESSAGE_SCHEMA)).cast(MESSAGE_SCHEMA))  # type: ignore[arg-type]
    if not parts:
        return pl.DataFrame(schema=MESSAGE_SCHEMA)
    return pl.concat(parts)


__all__ = ["ENCODERS", "LORAWAN", "MESSAGE_SCHEMA", "encode_messages", "send_unit"]
