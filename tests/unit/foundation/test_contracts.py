"""Contracts round-trip through the codec and validate against the shipped JSON Schemas."""

from __future__ import annotations

import base64
import json

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotstream import codec
from pilotstream.contracts import (
    NO_SEQ,
    Reading,
    ReadingBatch,
    Rejection,
    WindowDelta,
    batch_readings,
)
from pilotstream.errors import DecodeError
from pilotstream.vocab import METRICS

metric_st = st.sampled_from(sorted(METRICS))
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def readings(draw: st.DrawFn) -> list[Reading]:
    device = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True))
    n = draw(st.integers(1, 20))
    out = []
    for i in range(n):
        metric = draw(metric_st)
        spec = METRICS[metric]
        out.append(
            Reading(
                tenant="paris-energy-1",
                city="paris",
                device_id=device,
                metric=metric,
                ts_ms=draw(st.integers(0, 2**42)),
                value=draw(finite),
                unit=spec.unit,
                kind=spec.kind,
                seq=draw(st.one_of(st.just(NO_SEQ), st.integers(0, 2**40))) if i % 2 else i,
                received_at_ms=1_700_000_000_000,
                gateway_id="gw-1",
            )
        )
    return out


@given(readings())
def test_batch_roundtrip_is_exact_and_valid_against_schema(rs: list[Reading]) -> None:
    batches = batch_readings(rs)
    assert len(batches) == 1
    data = codec.encode(batches[0])
    jsonschema.validate(json.loads(data), codec.json_schema("readings"))
    back = codec.decode_batch(data)
    assert back == batches[0]
    assert back.readings() == rs


def test_batch_groups_by_device_in_arrival_order() -> None:
    a = Reading(
        tenant="t",
        city="c",
        device_id="a",
        metric="power.active",
        ts_ms=1,
        value=1.0,
        unit="kW",
        kind="gauge",
    )
    b = Reading(
        tenant="t",
        city="c",
        device_id="b",
        metric="power.active",
        ts_ms=2,
        value=2.0,
        unit="kW",
        kind="gauge",
    )
    a2 = Reading(
        tenant="t",
        city="c",
        device_id="a",
        metric="power.active",
        ts_ms=3,
        value=3.0,
        unit="kW",
        kind="gauge",
    )
    batches = batch_readings([a, b, a2])
    assert [bt.device_id for bt in batches] == ["a", "b"]
    assert batches[0].ts_ms == [1, 3]


def test_decoder_rejects_ragged_columns_and_wrong_version() -> None:
    good = ReadingBatch(
        tenant="t", city="c", device_id="d", gateway_id="g", received_at_ms=0,
        metric=["power.active"], ts_ms=[1], value=[1.0], unit=["kW"], kind=["gauge"], seq=[NO_SEQ],
    )  # fmt: skip
    obj = json.loads(codec.encode(good))
    obj["value"] = [1.0, 2.0]
    with pytest.raises(DecodeError, match="different lengths"):
        codec.decode_batch(json.dumps(obj).encode())
    obj = json.loads(codec.encode(good))
    obj["v"] = 2
    with pytest.raises(DecodeError) as err:
        codec.decode_batch(json.dumps(obj).encode())
    assert err.value.reason == "bad_version"
    with pytest.raises(DecodeError):
        codec.decode_batch(b"{not json")


def test_schema_refuses_what_the_contract_refuses() -> None:
    schema = codec.json_schema("readings")
    obj = {
        "v": 1, "tenant": "Bad Tenant", "city": "c", "device_id": "d", "gateway_id": "g",
        "received_at_ms": 0, "metric": ["power.active"], "ts_ms": [1], "value": [1.0],
        "unit": ["W"], "kind": ["gauge"], "seq": [-1],
    }  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, schema)


def test_rejection_and_delta_roundtrip_and_validate() -> None:
    rej = Rejection(
        reason="non_finite", detail="value NaN", tenant="paris-energy-1", topic="pilots/x/json/d",
        received_at_ms=5, gateway_id="gw", payload=b"\x00\xffNaN", payload_size=3, device_id="d",
        msg_id="d:17#dup",
    )  # fmt: skip
    data = codec.encode(rej)
    obj = json.loads(data)
    jsonschema.validate(obj, codec.json_schema("rejected"))
    assert base64.b64decode(obj["payload"]) == b"\x00\xffNaN"
    assert codec.decode_rejection(data) == rej
    assert obj["msg_id"] == "d:17#dup"
    # a dead letter of an older gateway, without the id, still decodes and validates
    del obj["msg_id"]
    jsonschema.validate(obj, codec.json_schema("rejected"))
    assert codec.decode_rejection(json.dumps(obj).encode()).msg_id == ""
    delta = WindowDelta(
        tenant="t", device_id="d", metric="energy.active.import", bucket_start_ms=0, width_s=900,
        actual=1.0, baseline=1.2, delta=0.2, factor=0.056, avoided_co2e_kg=0.0112, coverage=1.0,
        baseline_model_id="tow-1", factor_id="grid-fr-2023", revision=1,
    )  # fmt: skip
    data = codec.encode(delta)
    jsonschema.validate(json.loads(data), codec.json_schema("deltas"))
    assert codec.decode_delta(data) == delta
