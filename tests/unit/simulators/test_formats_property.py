"""Property: any finite reading in any unit that fits its metric survives json and senml encoding."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotstream.vocab import METRICS, UNITS, conversion
from simulators.formats import encode_messages
from simulators.formats.reference import parse

PAIRS = [(m, u) for m in METRICS for u in UNITS if conversion(u, m) is not None]

reading = st.tuples(
    st.sampled_from(PAIRS),
    st.integers(min_value=1_600_000_000, max_value=1_900_000_000),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(reading, min_size=1, max_size=6), st.sampled_from(["json", "senml"]))
def test_encode_then_parse_gives_the_readings_back(rows: list, fmt: str) -> None:
    _round_trip(rows, fmt)


def test_kelvin_offset_round_trips() -> None:
    _round_trip([(("weather.temperature", "K"), 1_700_000_000, -5.25)], "json")
    _round_trip([(("weather.temperature", "K"), 1_700_000_000, 21.5)], "senml")


def _round_trip(rows: list, fmt: str) -> None:
    frame = pl.DataFrame(
        {
            "tenant": "paris-energy-1",
            "device_id": "dev-1",
            "fmt": fmt,
            "application": "",
            "metric": [p[0] for p, _, _ in rows],
            "unit": [p[1] for p, _, _ in rows],
            "ts_ms": [s * 1000 for _, s, _ in rows],
            "value": [round(v, 3) for _, _, v in rows],
            "slot": 0,
            "msg_id": "dev-1:0",
        }
    )
    (msg,) = encode_messages(frame).iter_rows(named=True)
    got = sorted(
        (r.metric, r.ts_ms, round(r.value, 2)) for r in parse(msg["topic"], msg["payload"].encode())
    )
    want = sorted(
        zip(frame["metric"], frame["ts_ms"], [round(v, 2) for v in frame["value"]], strict=True)
    )
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for (_, _, a), (_, _, b) in zip(got, want, strict=True):
        assert abs(a - b) <= 0.011 + 1e-6 * abs(b)
