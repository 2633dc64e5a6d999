"""Decode, dedup and per-reading cleaning: result against expected arrays."""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.testing import assert_allclose
from polars.testing import assert_frame_equal

from pilotstream.contracts import ReadingBatch
from processors.kernels import CleanParams, clean, decode_batches, dedup
from processors.kernels import flags as qf

from .simdata import readings

Q = 900_000  # 15 minutes in ms
E = "energy.active.import"


def _batch(device: str, ts: list[int], values: list[float]) -> ReadingBatch:
    n = len(ts)
    return ReadingBatch(
        tenant="paris-energy-1",
        city="paris",
        device_id=device,
        gateway_id="g1",
        received_at_ms=7,
        metric=[E] * n,
        ts_ms=ts,
        value=values,
        unit=["kWh"] * n,
        kind=["counter"] * n,
        seq=list(range(n)),
    )


def test_decode_concatenates_batches_and_repeats_batch_fields() -> None:
    result = decode_batches([_batch("a", [0, Q], [1.0, 2.0]), _batch("b", [Q], [5.0])])
    expected = pl.DataFrame(
        {
            "tenant": ["paris-energy-1"] * 3,
            "device_id": ["a", "a", "b"],
            "metric": [E] * 3,
            "kind": ["counter"] * 3,
            "ts_ms": [0, Q, Q],
            "value": [1.0, 2.0, 5.0],
            "seq": [0, 1, 0],
            "received_at_ms": [7, 7, 7],
        },
        schema=result.schema,
    )
    assert_frame_equal(result, expected)
    assert decode_batches([]).height == 0


def test_dedup_keeps_first_arrival_and_sorts() -> None:
    frame = readings(
        [
            ("a", E, "counter", 2 * Q, 3.0),
            ("a", E, "counter", Q, 2.0),
            ("a", E, "counter", 2 * Q, 99.0),
        ]
    )
    result, dropped = dedup(frame)
    assert dropped == 1
    assert result["ts_ms"].to_list() == [Q, 2 * Q]
    assert result["value"].to_list() == [2.0, 3.0]


def test_counter_rollover_reset_and_gap() -> None:
    ts = [0, Q, 2 * Q, 3 * Q, 5 * Q, 6 * Q]
    values = [99_980.0, 99_995.0, 5.0, 20.0, 3.0, 8.0]  # wrap at 100000, then a reset
    frame, _ = dedup(readings([("m", E, "counter", t, v) for t, v in zip(ts, values, strict=True)]))
    result = clean(
        frame, intervals=pl.DataFrame({"device_id": ["m"], "metric": [E], "interval_ms": [Q]})
    )
    assert_allclose(result["amount"].to_numpy(), [np.nan, 15.0, 10.0, 15.0, 3.0, 5.0])
    expected_flags = [0, 0, qf.ROLLOVER | qf.NEGATIVE, 0, qf.RESET | qf.NEGATIVE | qf.GAP, 0]
    assert result["flags"].to_list() == expected_flags


def test_known_register_max_overrides_digit_width() -> None:
    frame, _ = dedup(readings([("m", E, "counter", 0, 60_000.0), ("m", E, "counter", Q, 100.0)]))
    reg = pl.DataFrame({"device_id": ["m"], "metric": [E], "register_max": [65_536.0]})
    result = clean(frame, register_max=reg)
    assert_allclose(result["amount"].to_numpy(), [np.nan, 65_536.0 - 60_000.0 + 100.0])
    assert result["flags"][1] & qf.ROLLOVER


def test_spike_out_of_range_and_stuck() -> None:
    temps = [10.0, 11.0, 10.5, 12.0, 11.5, 10.8, 11.2, 40.0, 11.0, 75.0]
    rows = [("w", "weather.temperature", "gauge", i * Q, v) for i, v in enumerate(temps)]
    rows += [("s", "weather.temperature", "gauge", i * Q, 7.0) for i in range(5)]
    frame, _ = dedup(readings(rows))
    result = clean(frame, params=CleanParams(stuck_run=3))
    flags_s = result.filter(pl.col("device_id") == "s")["flags"].to_list()
    flags_w = result.filter(pl.col("device_id") == "w")["flags"].to_list()
    assert flags_s == [0, 0, qf.STUCK, qf.STUCK, qf.STUCK]
    assert flags_w[7] == qf.SPIKE  # 40 > median + 3 IQR
    assert flags_w[9] == qf.SPIKE | qf.OUT_OF_RANGE  # 75 Cel is not an outdoor temperature
    assert not any(flags_w[i] for i in (0, 1, 2, 3, 4, 5, 6, 8))


def test_spike_uses_reference_statistics_when_given() -> None:
    frame, _ = dedup(
        readings(
            [("c", "traffic.count.car", "delta", i * Q, v) for i, v in enumerate([5.0, 6.0, 30.0])]
        )
    )
    reference = pl.DataFrame(
        {"device_id": ["c"], "metric": ["traffic.count.car"], "median": [5.0], "iqr": [2.0]}
    )
    result = clean(frame, reference=reference)
    assert result["flags"].to_list() == [0, 0, qf.SPIKE]


def test_negative_delta_is_out_of_range() -> None:
    frame, _ = dedup(readings([("c", "traffic.count.car", "delta", 0, -1.0)]))
    assert clean(frame)["flags"][0] & qf.OUT_OF_RANGE


def _counter_clean(values: list[float]) -> pl.DataFrame:
    rows = [("m", E, "counter", i * Q, v) for i, v in enumerate(values)]
    frame, _ = dedup(readings(rows))
    intervals = pl.DataFrame({"device_id": ["m"], "metric": [E], "interval_ms": [Q]})
    return clean(frame, intervals=intervals)


def test_glitch_is_told_from_a_reset_by_the_next_reading() -> None:
    # 1000x glitch (Wh number labelled kWh) at 2, a low glitch at 5, then a persistent drop (reset)
    values = [100.0, 102.0, 104_000.0, 106.0, 108.0, 3.0, 110.0, 112.0, 1.0, 2.5]
    result = _counter_clean(values)
    expected = [np.nan, 2.0, 0.0, 4.0, 2.0, 0.0, 2.0, 2.0, 1.0, 1.5]
    assert_allclose(result["amount"].to_numpy(), expected)
    g, r = qf.GLITCH, qf.RESET | qf.NEGATIVE
    assert result["flags"].to_list() == [0, 0, g, g, 0, g, g, 0, r, 0]
    assert qf.GLITCH & qf.MASKING


def test_glitch_before_a_rollover_and_swapped_readings() -> None:
    # readings at 1 and 2 swapped by clock skew; a wrap at 10000 later
    values = [9_900.0, 9_930.0, 9_920.0, 9_940.0, 9_960.0, 9_980.0, 5.0, 25.0]
    result = _counter_clean(values)
    expected = [np.nan, 0.0, 20.0, 20.0, 20.0, 20.0, 25.0, 20.0]
    assert_allclose(result["amount"].to_numpy(), expected)
    g = qf.GLITCH
    assert result["flags"].to_list() == [0, g, g, 0, 0, 0, qf.ROLLOVER | qf.NEGATIVE, 0]


def test_drop_to_a_value_far_from_zero_is_no_reset() -> None:
    # the key's first reading is a x1000 glitch: the drop after it is not a meter swap
    result = _counter_clean([987_000_000.0, 987_005.0, 987_010.0, 987_016.0, 4.0, 9.0])
    assert_allclose(result["amount"].to_numpy(), [np.nan, 0.0, 5.0, 6.0, 4.0, 5.0])
    neg = qf.NEGATIVE
    assert result["flags"].to_list() == [0, qf.GLITCH | neg, 0, 0, qf.RESET | neg, 0]


def test_delta_spike_far_above_both_neighbours_without_history() -> None:
    counts = [10.0, 12.0, 400.0, 11.0, 0.0, 8.0, 0.0, 90.0]
    rows = [("c", "traffic.count.car", "delta", i * Q, v) for i, v in enumerate(counts)]
    frame, _ = dedup(readings(rows))
    result = clean(frame, reference=pl.DataFrame(schema={"device_id": pl.String,
                   "metric": pl.String, "median": pl.Float64, "iqr": pl.Float64}))  # fmt: skip
    # 400 > 3 x 12 + 10; a quiet 8 among zeros is no spike; the last reading waits for its next
    assert result["flags"].to_list() == [0, 0, qf.SPIKE, 0, 0, 0, 0, 0]
    assert_allclose(result["amount"].to_numpy(), counts)


def test_decode_keeps_per_reading_metric_and_kind_of_mixed_batches() -> None:
    mixed = ReadingBatch(
        tenant="paris-energy-1",
        city="paris",
        device_id="m",
        gateway_id="g1",
        received_at_ms=9,
        metric=[E, "weather.temperature", E],
        ts_ms=[0, 1, Q],
        value=[1.0, 12.5, 2.0],
        unit=["kWh", "Cel", "kWh"],
        kind=["counter", "gauge", "counter"],
        seq=[0, 1, 2],
    )
    result = decode_batches([_batch("a", [0], [1.0]), mixed, _batch("b", [], [])])
    assert result["metric"].to_list() == [E, E, "weather.temperature", E]
    assert result["kind"].to_list() == ["counter", "counter", "gauge", "counter"]
    assert result["device_id"].to_list() == ["a", "m", "m", "m"]
    assert result["received_at_ms"].to_list() == [7, 9, 9, 9]
