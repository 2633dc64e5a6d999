"""Window aggregation: attribution, coverage and flags against expected frames."""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.testing import assert_array_equal
from polars.testing import assert_frame_equal

from processors.kernels import aggregate, clean, dedup
from processors.kernels import flags as qf
from processors.kernels.windows import window_arrays

from .simdata import readings

Q = 900_000
H = 3_600_000
E = "energy.active.import"


def _hours(ts: list[int]) -> pl.DataFrame:
    frame, _ = dedup(readings([("m", E, "counter", t, float(i)) for i, t in enumerate(ts)]))
    intervals = pl.DataFrame({"device_id": ["m"], "metric": [E], "interval_ms": [Q]})
    return aggregate(clean(frame, intervals=intervals), 3600).select(
        "bucket_start_ms", "actual", "n_readings", "coverage", "flags"
    )


def _expected(
    actual: list[float], n: list[int], coverage: list[float], flags: list[int]
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "bucket_start_ms": [0, H],
            "actual": actual,
            "n_readings": n,
            "coverage": coverage,
            "flags": flags,
        },
        schema_overrides={"bucket_start_ms": pl.Int64, "n_readings": pl.Int64, "flags": pl.Int64},
    )


def test_counter_intervals_end_at_their_reading_and_a_gap_inside_a_window_loses_nothing() -> None:
    # readings every 15 min; the one at 1:30 is missing: the register counted through it
    result = _hours([0, Q, 2 * Q, 3 * Q, 4 * Q, 5 * Q, 7 * Q, 8 * Q])
    # (0:00, 1:00] = 4 steps; (1:00, 2:00] = 3 readings covering the whole hour
    assert_frame_equal(result, _expected([4.0, 3.0], [4, 3], [1.0, 1.0], [0, 0]))


def test_counter_gap_over_a_window_edge_masks_both_windows() -> None:
    # the 1:00 reading is missing: 0:45-1:00 is counted in the next hour
    result = _hours([0, Q, 2 * Q, 3 * Q, 5 * Q, 6 * Q, 7 * Q, 8 * Q])
    low, gap = qf.LOW_COVERAGE, qf.GAP
    assert_frame_equal(result, _expected([3.0, 4.0], [3, 4], [0.75, 1.0], [low, gap]))


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


def test_window_sums_equal_reduceat_for_any_mix_of_run_lengths() -> None:
    rng = np.random.default_rng(3)
    for single_share in (1.0, 0.95, 0.5, 0.0):  # share of one-reading windows
        n = 2000
        code = np.sort(rng.integers(0, 50, n))
        step = np.where(rng.random(n) < single_share, Q, Q // 4)
        ts = np.cumsum(step) + code * 10**9
        amount = rng.uniform(-1, 1, n) * 10.0 ** rng.integers(-8, 8, n)
        flags = rng.integers(0, 2**7, n)
        for gauge in (np.zeros(n, dtype=bool), np.ones(n, dtype=bool)):
            w = window_arrays(
                code=code,
                ts=ts,
                gauge=gauge,
                amount=amount,
                flags=flags,
                interval=np.full(50, float(Q)),
                width_s=900,
                min_coverage=0.0,
            )
            sums = np.add.reduceat(amount, w.head)
            assert_array_equal(w.actual, sums / w.n_readings if gauge[0] else sums)
            assert_array_equal(w.flags, np.bitwise_or.reduceat(flags, w.head))
        assert (w.n_readings == 1).any() or single_share == 0.0
