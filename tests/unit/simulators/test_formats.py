"""Every format encodes per the contract and round-trips through the reference parser."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from pilotstream.registry import load_registry
from simulators.formats.reference import ReferenceError_, parse, resolve_senml
from simulators.run import Run


def _parsed(run: Run) -> pl.DataFrame:
    registry = load_registry()
    rows = [
        (r.tenant, r.device_id, r.metric, r.ts_ms, r.value)
        for topic, payload in run.messages.select("topic", "payload").iter_rows()
        for r in parse(topic, payload.encode(), registry)
    ]
    return pl.DataFrame(
        rows, schema=["tenant", "device_id", "metric", "ts_ms", "value"], orient="row"
    )


def test_every_message_round_trips_to_the_clean_readings(clean_run: Run) -> None:
    result = _parsed(clean_run).sort(["device_id", "metric", "ts_ms"])
    expected = clean_run.clean.select("tenant", "device_id", "metric", "ts_ms", "value").sort(
        ["device_id", "metric", "ts_ms"]
    )
    assert result.height == expected.height
    assert result.select("tenant", "device_id", "metric", "ts_ms").equals(
        expected.select("tenant", "device_id", "metric", "ts_ms")
    )
    np.testing.assert_allclose(result["value"], expected["value"], rtol=1e-9, atol=1e-3)


def test_all_five_formats_are_used(clean_run: Run) -> None:
    assert set(clean_run.messages["fmt"]) == {"json", "senml", "ocpp", "tts", "chirpstack"}


def _first(run: Run, fmt: str) -> tuple[str, object]:
    topic, payload = run.messages.filter(pl.col("fmt") == fmt).select("topic", "payload").row(0)
    return topic, json.loads(payload)


def test_senml_uses_base_name_time_unit_and_relative_times(clean_run: Run) -> None:
    packs = clean_run.messages.filter(pl.col("fmt") == "senml")["payload"]
    pack = next(json.loads(p) for p in packs if len(json.loads(p)) == 4)
    head, rest = pack[0], pack[1:]
    assert head["bn"].startswith("urn:dev:")
    assert head["bn"].endswith(":")
    assert isinstance(head["bt"], int)
    assert head["bt"] > 2**28
    assert "bu" in head
    assert "t" not in head
    assert all("bn" not in r and "bt" not in r and 0 <= r["t"] < 2**28 for r in rest)
    assert [r["t"] for r in rest] == sorted(r["t"] for r in rest)


def test_ocpp_values_are_strings_and_calls_are_meter_values(clean_run: Run) -> None:
    docs = [json.loads(p) for p in clean_run.messages.filter(pl.col("fmt") == "ocpp")["payload"]]
    calls = [d for d in docs if isinstance(d, list)]
    plain = [d for d in docs if isinstance(d, dict)]
    assert calls
    assert plain
    assert all(c[0] == 2 and c[2] == "MeterValues" for c in calls)
    sampled = [sv for d in plain for mv in d["meterValue"] for sv in mv["sampledValue"]]
    assert all(isinstance(sv["value"], str) for sv in sampled)
    assert {sv["unit"] for sv in sampled} == {"Wh", "W"}


def test_tts_uplink_shape_and_topic(clean_run: Run) -> None:
    topic, doc = _first(clean_run, "tts")
    assert isinstance(doc, dict)
    ids = doc["end_device_ids"]
    assert topic == (
        f"pilots/{topic.split('/')[1]}/tts/v3/{ids['application_ids']['application_id']}@ai4cities"
        f"/devices/{ids['device_id']}/up"
    )
    assert "f_cnt" not in doc["uplink_message"]  # zero fields are omitted, as TTS does
    assert topic.split("/")[1] in ("paris-energy-1", "helsinki-energy-1")
    assert len(ids["dev_eui"]) == 16
    assert all(isinstance(v, float) for v in doc["uplink_message"]["decoded_payload"].values())


def test_chirpstack_event_shape_and_topic(clean_run: Run) -> None:
    topic, doc = _first(clean_run, "chirpstack")
    assert isinstance(doc, dict)
    info = doc["deviceInfo"]
    assert topic.endswith(f"/application/{info['applicationId']}/device/{info['devEui']}/event/up")
    assert set(doc["object"]) == {"traffic.count.car", "traffic.count.bike"}
    assert doc["fCnt"] == 0
    assert len(doc["deduplicationId"]) == 36


def test_json_payload_names_its_device(clean_run: Run) -> None:
    topic, doc = _first(clean_run, "json")
    assert isinstance(doc, dict)
    assert topic.endswith("/json/" + doc["device_id"])
    assert all({"metric", "ts", "value", "unit"} == set(r) for r in doc["readings"])


def test_senml_resolution_of_the_rfc_8428_examples() -> None:
    pack = [
        {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
        {"n": "humidity", "u": "%RH", "v": 30},
        {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
        {"n": "humidity", "u": "%RH", "v": 67},
    ]
    assert resolve_senml(pack) == [
        ("2001:db8::2/temperature", 1.320078429e09, "Cel", 25.2),
        ("2001:db8::2/humidity", 1.320078429e09, "%RH", 30.0),
        ("2001:db8::1/temperature", 1.320078429e09, "Cel", 12.3),
        ("2001:db8::1/humidity", 1.320078429e09, "%RH", 67.0),
    ]
    voltage = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
        {"n": "current", "u": "A", "v": 1.2},
    ]
    assert [r[0] for r in resolve_senml(voltage)] == [
        "urn:dev:ow:10e2073a01080063:voltage",
        "urn:dev:ow:10e2073a01080063:current",
    ]


def test_senml_label_ending_in_underscore_is_refused() -> None:
    with pytest.raises(ReferenceError_, match="_"):
        resolve_senml([{"n": "x", "v": 1, "bad_": 2}])
