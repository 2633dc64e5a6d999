"""Property tests: any bytes, any JSON, on any topic, end as readings or dead letters with a reason;
no non-finite value ever reaches a reading batch."""

from __future__ import annotations

import json
import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decoders.base import REASONS
from ingest.mqtt_source import Message
from pilotstream.codec import decode_batch, decode_rejection

from .builders import make_builder

NOW_MS = int(time.time() * 1000)
BUILDER = make_builder()
TOPICS = st.sampled_from(
    [
        "pilots/paris-energy-1/senml/m1",
        "pilots/paris-energy-1/json/m1",
        "pilots/paris-energy-1/ocpp/cp1",
        "pilots/paris-energy-1/tts/v3/paris-schools@ttn/devices/d1/up",
        "pilots/amsterdam-mobility-1/chirpstack/application/a/device/0101/event/up",
        "pilots/nobody/senml/m1",
        "pilots/paris-energy-1/weird/m1",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["energy.active.import", "power.active", "kWh", "W", "Wh", "urn:dev:m1:"]),
)
KEYS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["n", "v", "u", "t", "s", "bn", "bt", "bu", "bv", "bs", "vs", "metric", "value"]
    ),
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)  # fmt: skip


def _check(topic: str, payload: bytes) -> None:
    built = BUILDER.build([Message(1, 1, topic, payload, NOW_MS)])
    readings = 0
    for rec in built.records:
        if rec.topic == "r":
            batch = decode_batch(rec.value)
            assert all(math.isfinite(v) for v in batch.value)
            assert batch.tenant in BUILDER.registry.pilots
            readings += len(batch)
        else:
            letter = decode_rejection(rec.value)
            assert letter.reason in REASONS
            assert letter.payload == payload[:256]
            assert letter.payload_size == len(payload)
    assert readings == built.readings
    assert built.records, "a message must end as readings or dead letters"


@settings(max_examples=300, deadline=None)
@given(TOPICS, st.binary(max_size=300))
def test_any_bytes(topic: str, payload: bytes) -> None:
    _check(topic, payload)


@settings(max_examples=300, deadline=None)
@given(TOPICS, JSON)
def test_any_json(topic: str, doc: object) -> None:
    _check(topic, json.dumps(doc, allow_nan=True).encode())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"n": st.sampled_from(["energy.active.import", "power.active", "x"]), "v": SCALARS},
            optional={"u": SCALARS, "t": SCALARS, "s": SCALARS, "bt": SCALARS, "bv": SCALARS},
        ),
        min_size=1,
        max_size=6,
    )
)
def test_senml_like_packs(pack: list[dict[str, object]]) -> None:
    _check("pilots/paris-energy-1/senml/m1", json.dumps(pack, allow_nan=True).encode())


def test_good_and_bad_records_of_one_pack_split() -> None:
    pack = [
        {
            "bn": "urn:dev:m1:",
            "bt": NOW_MS / 1000,
            "bu": "kWh",
            "n": "energy.active.import",
            "v": 1,
        },
        {"n": "energy.active.import", "u": "kW", "v": 2},
        {"n": "energy.active.import", "t": 1, "v": 3},
    ]
    built = BUILDER.build(
        [Message(1, 1, "pilots/paris-energy-1/senml/m1", json.dumps(pack).encode(), NOW_MS)]
    )
    kinds = sorted(r.topic for r in built.records)
    assert kinds == ["r", "x"]
    batch = decode_batch(next(r.value for r in built.records if r.topic == "r"))
    assert batch.value == [1.0, 3.0]
    assert batch.city == "paris"
    letter = decode_rejection(next(r.value for r in built.records if r.topic == "x"))
    assert (letter.reason, letter.record_index, letter.device_id) == ("bad_unit", 1, "m1")


def test_readings_of_one_device_coalesce_in_arrival_order() -> None:
    msgs = [
        Message(i, 1, f"pilots/paris-energy-1/json/m{i % 2}",
                json.dumps({"readings": [{"metric": "power.active", "ts_ms": NOW_MS, "value": i, "unit": "kW", "seq": i}]}).encode(),
                NOW_MS)
        for i in range(6)
    ]  # fmt: skip
    built = BUILDER.build(msgs)
    batches = [decode_batch(r.value) for r in built.records]
    assert [(b.device_id, b.seq) for b in batches] == [("m0", [0, 2, 4]), ("m1", [1, 3, 5])]
