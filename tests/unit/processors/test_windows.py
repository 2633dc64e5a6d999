"""Window aggregation: attribution, coverage and flags against expected frames."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from processors.kernels import aggregate, clean, dedup
from processors.kernels import flags as qf

from .simdata import readings

Q = 900_000
H = 3_600_000
E = "energy.active.import"


def test_counter_intervals_end_at_their_reading_and_gaps_lower_coverage() -> None:
    # readings every 15 min; the one at 1:30 is missing
    ts = [0, Q, 2 * Q, 3 * Q, 4 * Q, 5 * Q, 7 * Q, 8 * Q]
    frame, _ = dedup(readings([("m", E, "counter", t, float(i)) for i, t in enumerate(ts)]))
    intervals = pl.DataFrame({"device_id": ["m"], "metric": [E], "interval_ms": [Q]})
    result = aggregate(clean(frame, intervals=intervals), 3600).select(
        "bucket_start_ms", "actual", "n_readings", "coverage", "flags"
    )
    expected = pl.DataFrame(
        {
            "bucket_start_ms": [0, H],
            "actual": [4.0, 3.0],  # (0:00, 1:00] = 4 steps; (1:00, 2:00] = 3 with one gap
            "n_readings": [4, 3],
            "coverage": [1.0, 0.75],
            "flags": [0, qf.GAP | qf.LOW_COVERAGE],
        },
        schema_overrides={"bucket_start_ms": pl.Int64, "n_readings": pl.Int64, "flags": pl.Int64},
    )
    assert_frame_equal(result, expected)


def test_gauges_average_in_the_window_of_their_timestamp() -> None:
    frame, _ = dedup(
        readings(
            [
                ("w", "weather.temperature", "gauge", t, v)
                for t, v in [(0, 10.0), (Q, 12.0), (H, 20.0)]
            ]
        )
    )
    result = aggregate(clean(frame), 3600)
    assert result["bucket_start_ms"].to_list() == [0, H]
    assert result["actual"].to_list() == [11.0, 20.0]
    assert result["width_s"].to_list() == [3600, 3600]
