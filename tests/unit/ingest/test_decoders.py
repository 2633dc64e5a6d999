"""Strict JSON parsing and the json, OCPP, TTS and ChirpStack decoders against example payloads."""

from __future__ import annotations

import json

import pytest

from ingest.decoders import DecodeContext, RejectedMessageError, decode_message
from ingest.decoders.base import strict_json
from pilotstream.errors import DecodeError
from pilotstream.registry import load_registry

NOW_MS = 1_772_360_100_000  # 2026-03-01T10:15:00Z
REG = load_registry()
CTX = DecodeContext(received_at_ms=NOW_MS, lorawan=REG.lorawan, max_depth=8, max_bytes=4096)

# The Things Stack v3 uplink (fields as documented; zero fields omitted).
TTS_UPLINK = {
    "end_device_ids": {
        "device_id": "school-7-heat",
        "application_ids": {"application_id": "paris-schools"},
        "dev_eui": "70B3D57ED005A1B2",
        "dev_addr": "260B1234",
    },
    "correlation_ids": ["as:up:01H..."],
    "received_at": "2026-03-01T10:15:01.123456789Z",
    "uplink_message": {
        "session_key_id": "AXA...",
        "f_port": 2,
        "f_cnt": 42,
        "frm_payload": "AQID",
        "decoded_payload": {"energy.heat": 1234.5, "weather.temperature": 19.25},
        "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "rssi": -97, "snr": 7.5}],
        "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}}},
        "received_at": "2026-03-01T10:15:00.987654321Z",
    },
}
TTS_TOPIC = "pilots/paris-energy-1/tts/v3/paris-schools@ttn/devices/school-7-heat/up"

# ChirpStack v4 uplink event.
CS_EVENT = {
    "deduplicationId": "3ac5cfa5-1d2a-4b3b-8f0c-2c1d5e8b9a01",
    "time": "2026-03-01T10:14:59.5+01:00",
    "deviceInfo": {
        "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        "tenantName": "ChirpStack",
        "applicationId": "6f3c1a2e-1d3b-4b8e-9a4f-2c7d5e8f9a01",
        "applicationName": "bike counters",
        "deviceName": "counter-12",
        "devEui": "0101010101010101",
        "tags": {"street": "Ruysdaelkade"},
    },
    "devAddr": "00189440",
    "fCnt": 10,
    "fPort": 1,
    "data": "qg==",
    "object": {"traffic.count.bike": 17, "traffic.count.car": 0},
    "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -36, "snr": 10.5}],
    "txInfo": {"frequency": 868100000, "modulation": {"lora": {"spreadingFactor": 7}}},
}
CS_TOPIC = (
    "pilots/amsterdam-mobility-1/chirpstack/application/6f3c1a2e-1d3b-4b8e-9a4f-2c7d5e8f9a01"
    "/device/0101010101010101/event/up"
)


def _reason(topic: str, payload: bytes) -> str:
    with pytest.raises(RejectedMessageError) as info:
        decode_message(topic, payload, CTX)
    return info.value.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[1, NaN]", "non_finite"),
        (b'{"v": Infinity}', "non_finite"),
        (b'{"v": -Infinity}', "non_finite"),
        (b'{"v": 1e400}', "non_finite"),
        (b'{"a": 1, "a": 2}', "duplicate_key"),
        (b'[{"n": "x", "v": 1, "n": "y"}]', "duplicate_key"),
        (b"[" * 9 + b"]" * 9, "too_deep"),
        (b"x" * 4097, "too_large"),
        (b'{"a": ', "bad_json"),
        (b"\xff\xfe", "bad_json"),
    ],
)
def test_strict_json_refuses(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        strict_json(payload, CTX)
    assert info.value.reason == reason


def test_strict_json_ignores_brackets_colons_and_keywords_inside_strings() -> None:
    text = b'{"a": "[[[[[[[[[[:::NaN Infinity", "b\\"": {"c": "{:}"}}'
    assert strict_json(text, CTX) == {"a": "[[[[[[[[[[:::NaN Infinity", 'b"': {"c": "{:}"}}


def test_json_format_readings() -> None:
    doc = {
        "device_id": "m1",
        "readings": [
            {
                "metric": "energy.active.import",
                "ts": "2026-03-01T10:15:00Z",
                "value": 5,
                "unit": "kWh",
                "seq": 17,
            },
            {"metric": "power.active", "ts_ms": NOW_MS, "value": 2000.0, "unit": "W"},
            {"metric": "power.active", "value": 1.0, "unit": "kW"},  # no time
        ],
    }
    info, d = decode_message("pilots/paris-energy-1/json/m1", json.dumps(doc).encode(), CTX)
    assert info.tenant == "paris-energy-1"
    assert d.ts_ms == [NOW_MS, NOW_MS]
    assert d.value == [5.0, 2000.0]
    assert d.seq == [17, -1]
    assert [(r.reason, r.record_index) for r in d.rejects] == [("bad_schema", 2)]


def test_json_device_must_match_topic() -> None:
    payload = json.dumps({"device_id": "other", "readings": []}).encode()
    assert _reason("pilots/paris-energy-1/json/m1", payload) == "bad_schema"


def test_ocpp_bare_and_wrapped_with_defaults() -> None:
    req = {
        "connectorId": 1,
        "transactionId": 7,
        "meterValue": [
            {
                "timestamp": "2026-03-01T10:15:00Z",
                "sampledValue": [
                    {"value": "12345"},
                    {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "nan"},
                ],
            }
        ],
    }
    for payload in (req, [2, "abc", "MeterValues", req]):
        _, d = decode_message("pilots/paris-energy-1/ocpp/cp-1", json.dumps(payload).encode(), CTX)
        assert d.metric == ["energy.active.import", "power.active"]
        assert d.unit == ["Wh", "kW"]
        assert d.value == [12345.0, 7.4]
        assert d.ts_ms == [NOW_MS, NOW_MS]
        assert [r.reason for r in d.rejects] == ["bad_schema"]


def test_ocpp_wrong_action_is_refused() -> None:
    assert _reason("pilots/paris-energy-1/ocpp/cp-1", b'[2, "a", "Heartbeat", {}]') == "bad_schema"


def test_tts_uplink() -> None:
    info, d = decode_message(TTS_TOPIC, json.dumps(TTS_UPLINK).encode(), CTX)
    assert info.tenant == "paris-energy-1"
    assert d.device_id == "school-7-heat"
    assert d.metric == ["energy.heat", "weather.temperature"]
    assert d.value == [1234.5, 19.25]
    assert d.unit == ["kWh", "Cel"]
    assert d.seq == [42, 42]
    # uplink_message.received_at wins over the top-level one; nanoseconds are cut to µs
    assert d.ts_ms == [pytest.approx(NOW_MS + 987.654, abs=1e-3)] * 2


def test_tts_missing_f_cnt_means_zero_and_top_level_time_is_the_fallback() -> None:
    doc = json.loads(json.dumps(TTS_UPLINK))
    del doc["uplink_message"]["f_cnt"], doc["uplink_message"]["received_at"]
    _, d = decode_message(TTS_TOPIC, json.dumps(doc).encode(), CTX)
    assert d.seq == [0, 0]
    assert d.ts_ms[0] == pytest.approx(NOW_MS + 1123.456, abs=1e-3)


def test_tts_application_of_another_pilot_is_wrong_tenant() -> None:
    topic = TTS_TOPIC.replace("paris-energy-1", "helsinki-energy-1")
    assert _reason(topic, json.dumps(TTS_UPLINK).encode()) == "wrong_tenant"


def test_chirpstack_uplink() -> None:
    info, d = decode_message(CS_TOPIC, json.dumps(CS_EVENT).encode(), CTX)
    assert info.tenant == "amsterdam-mobility-1"
    assert d.device_id == "0101010101010101"
    assert d.metric == ["traffic.count.bike", "traffic.count.car"]
    assert d.value == [17.0, 0.0]
    assert d.unit == ["count", "count"]
    assert d.seq == [10, 10]
    assert d.ts_ms == [NOW_MS - 3_600_000 - 500.0] * 2  # 10:14:59.5+01:00 is 09:14:59.5Z


def test_chirpstack_wrong_application() -> None:
    doc = json.loads(json.dumps(CS_EVENT))
    doc["deviceInfo"]["applicationId"] = "00000000-0000-0000-0000-000000000000"
    assert _reason(CS_TOPIC, json.dumps(doc).encode()) == "wrong_tenant"


@pytest.mark.parametrize(
    "topic",
    [
        "pilots/paris-energy-1/xml/d",
        "other/paris-energy-1/json/d",
        "pilots/paris-energy-1/json",
        "pilots//json/d",
    ],
)
def test_unknown_topics(topic: str) -> None:
    assert _reason(topic, b"{}") == "unknown_format"
