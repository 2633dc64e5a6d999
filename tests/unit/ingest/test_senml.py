"""SenML resolution against RFC 8428's own examples (DOMAIN.md §5), and the mapping to readings."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decoders import DecodeContext, parse_topic, senml
from ingest.decoders.senml import BadRecordError, Resolved, decode, metric_of, resolve
from pilotstream.errors import DecodeError

NOW_S = 1_772_360_100.0  # 2026-03-01T10:15:00Z, the "receive time" of these tests


def test_rfc_single_datapoint() -> None:
    pack = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]
    assert resolve(pack, NOW_S) == [
        Resolved(name="urn:dev:ow:10e2073a01080063", time=NOW_S, unit="Cel", value=23.1)
    ]


def test_rfc_multiple_datapoints() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
        {"n": "current", "u": "A", "v": 1.2},
    ]
    assert resolve(pack, NOW_S) == [
        Resolved(name="urn:dev:ow:10e2073a01080063:voltage", time=NOW_S, unit="V", value=120.1),
        Resolved(name="urn:dev:ow:10e2073a01080063:current", time=NOW_S, unit="A", value=1.2),
    ]


def test_rfc_multiple_measurements_base_carried_forward() -> None:
    pack = [
        {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
        {"n": "humidity", "u": "%RH", "v": 30},
        {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
        {"n": "humidity", "u": "%RH", "v": 67},
    ]
    t = 1320078429.0
    assert resolve(pack, NOW_S) == [
        Resolved(name="2001:db8::2/temperature", time=t, unit="Cel", value=25.2),
        Resolved(name="2001:db8::2/humidity", time=t, unit="%RH", value=30.0),
        Resolved(name="2001:db8::1/temperature", time=t, unit="Cel", value=12.3),
        Resolved(name="2001:db8::1/humidity", time=t, unit="%RH", value=67.0),
    ]


def test_relative_times_base_value_and_sum() -> None:
    pack = [
        {"bn": "dev:", "bv": 100, "bs": 10, "bu": "W", "n": "p", "v": 5, "t": -60},
        {"n": "p", "s": 2, "t": 2**28},  # 2**28 is the first absolute time
    ]
    assert resolve(pack, NOW_S) == [
        Resolved(name="dev:p", time=NOW_S - 60, unit="W", value=105.0),
        Resolved(name="dev:p", time=float(2**28), unit="W", sum=12.0),
    ]


@pytest.mark.parametrize(
    "record",
    [
        {"n": "x", "v": 1, "foo_": 1},  # must-understand label
        {"n": "-bad", "v": 1},  # name must start alphanumeric
        {"n": "a b", "v": 1},  # space is not a name character
        {"n": "x"},  # neither value nor sum
        {"n": "x", "v": 1, "vs": "a"},  # two values
        {"n": "x", "v": "1"},  # string in v
        {"n": "x", "v": 1, "bver": 11},  # newer version than RFC 8428
    ],
)
def test_bad_records_are_refused_one_by_one(record: dict[str, object]) -> None:
    out = resolve([{"n": "ok", "v": 1}, record], NOW_S)
    assert isinstance(out[0], Resolved)
    assert isinstance(out[1], BadRecordError)


def test_metric_of_takes_the_part_after_the_last_separator() -> None:
    assert metric_of("urn:dev:meter-1:energy.active.import") == "energy.active.import"
    assert metric_of("2001:db8::2/weather.temperature") == "weather.temperature"
    assert metric_of("power.active") == "power.active"


def _decode(pack: object) -> tuple[list[float], list[str], list[str]]:
    topic = parse_topic("pilots/paris-energy-1/senml/meter-1")
    ctx = DecodeContext(received_at_ms=int(NOW_S * 1000), lorawan={})
    d = decode(topic, json.dumps(pack).encode(), ctx)
    return d.value, d.unit, [r.reason for r in d.rejects]


def test_simulator_pack_decodes_with_offsets() -> None:
    pack = [
        {
            "bn": "urn:dev:meter-1:",
            "bt": NOW_S,
            "bu": "kWh",
            "n": "energy.active.import",
            "v": 12.3,
        },
        {"n": "energy.active.import", "t": 900, "v": 12.5},
    ]
    topic = parse_topic("pilots/paris-energy-1/senml/meter-1")
    d = decode(topic, json.dumps(pack).encode(), DecodeContext(int(NOW_S * 1000), {}))
    assert d.device_id == "meter-1"
    assert d.metric == ["energy.active.import"] * 2
    assert d.ts_ms == [NOW_S * 1000, (NOW_S + 900) * 1000]
    assert d.value == [12.3, 12.5]


def test_sum_in_watts_becomes_kwh() -> None:
    values, units, _ = _decode([{"n": "energy.active.import", "u": "W", "s": 3.6e6}])
    assert values == [pytest.approx(1.0)]
    assert units == ["kWh"]


def test_sum_in_joules_is_energy() -> None:
    values, units, _ = _decode([{"n": "energy.active.import", "u": "J", "s": 7.2e6}])
    assert values == [pytest.approx(2.0)]
    assert units == ["kWh"]


def test_one_bad_record_rejects_only_that_record() -> None:
    values, _, reasons = _decode(
        [
            {"n": "power.active", "u": "kW", "v": 1},
            {"n": "x", "v": 2, "ext_": 1},
            {"n": "power.active", "u": "kW", "v": 3},
        ]
    )
    assert values == [1.0, 3.0]
    assert reasons == ["bad_senml"]


def test_string_values_are_not_readings() -> None:
    _, _, reasons = _decode([{"n": "status", "vs": "ok"}])
    assert reasons == ["bad_schema"]


SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        ["urn:dev:m1:", "energy.active.import", "power.active", "W", "kWh", "Wh", "x_"]
    ),
)
LABELS = st.sampled_from(
    ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(LABELS, SCALAR, max_size=6), min_size=1, max_size=6))
def test_fast_path_equals_general_path(pack: list[dict[str, object]]) -> None:
    """The typed fast path and the general RFC path give the same readings and refusals."""
    payload = json.dumps(pack).encode()
    topic = parse_topic("pilots/paris-energy-1/senml/m1")
    ctx = DecodeContext(received_at_ms=int(NOW_S * 1000), lorawan={})
    try:
        fast = decode(topic, payload, ctx)
    except DecodeError as exc:
        fast = exc.reason  # type: ignore[assignment]
    with patch.object(senml, "_fast_pack", lambda _payload: None):
        try:
            slow = decode(topic, payload, ctx)
        except DecodeError as exc:
            slow = exc.reason  # type: ignore[assignment]
    if isinstance(fast, str) or isinstance(slow, str):
        assert fast == slow
        return
    assert (fast.metric, fast.ts_ms, fast.value, fast.unit, fast.record_index) == (
        slow.metric, slow.ts_ms, slow.value, slow.unit, slow.record_index
    )  # fmt: skip
    assert [(r.reason, r.record_index) for r in fast.rejects] == [
        (r.reason, r.record_index) for r in slow.rejects
    ]
