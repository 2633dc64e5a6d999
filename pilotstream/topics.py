"""Kafka topic names (versioned) and the MQTT topic scheme pilots publish under."""

from __future__ import annotations

READINGS = "pilotstream.readings.v1"  # key: device id, value: ReadingBatch JSON
REJECTED = "pilotstream.rejected.v1"  # key: tenant, value: Rejection JSON
DELTAS = "pilotstream.deltas.v1"  # key: device id, value: WindowDelta JSON

ALL_TOPICS = (READINGS, REJECTED, DELTAS)

# MQTT: every pilot publishes under its own prefix; the broker ACL enforces it (user = tenant).
MQTT_ROOT = "pilots"
# pilots/{tenant}/json/{device_id}             canonical JSON
# pilots/{tenant}/senml/{device_id}            SenML pack (RFC 8428)
# pilots/{tenant}/ocpp/{device_id}             OCPP 1.6 MeterValues
# pilots/{tenant}/tts/v3/{app}@{tts_tenant}/devices/{device}/up     The Things Stack v3 uplink
# pilots/{tenant}/chirpstack/application/{app}/device/{dev_eui}/event/up   ChirpStack v4 uplink
FORMATS = ("json", "senml", "ocpp", "tts", "chirpstack")
GATEWAY_SHARE_GROUP = "gateways"


def mqtt_topic(tenant: str, fmt: str, device_id: str) -> str:
    """Topic for the simple formats (json, senml, ocpp)."""
    return f"{MQTT_ROOT}/{tenant}/{fmt}/{device_id}"


def gateway_subscription(shared: bool = True) -> str:
    """What gateways subscribe to; shared so several gateways split the load (MQTT 5)."""
    sub = f"{MQTT_ROOT}/#"
    return f"$share/{GATEWAY_SHARE_GROUP}/{sub}" if shared else sub
