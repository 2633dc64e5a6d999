"""Stepping a poll's devices a group at a time gives exactly what stepping them at once gives."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from processors.kernels import closing, eventtime, grouped

from .test_eventtime import NOW, Q, _device_stream, _split, _steps


def _devices(seeds: int) -> pl.DataFrame:
    """Two devices per seed (``a<seed>`` with a counter and a gauge, ``b<seed>``), time order."""
    frames = []
    for seed in range(seeds):
        for f in _device_stream(seed):
            frames.append(f.with_columns(pl.col("device_id") + str(seed)))
    out: pl.DataFrame = pl.concat(frames).sort("ts_ms", maintain_order=True)
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    group_rows=st.integers(1, 40),
    delays=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 12)), max_size=6),
    cuts=st.lists(st.integers(1, 400), max_size=8, unique=True),
    idle_after=st.sets(st.integers(0, 8), max_size=2),
)
def test_stepping_in_groups_gives_one_pass_s_results(
    group_rows: int, delays: list[tuple[int, int]], cuts: list[int], idle_after: set[int]
) -> None:
    rows = _devices(4)
    order = list(range(rows.height))
    for i, by in delays:  # late readings, some beyond the lateness
        order.insert(i + by, order.pop(i))
    batches = _split(rows[order], sorted(cuts))
    at_once = _steps(batches, idle_after)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grouped, "GROUP_ROWS", group_rows)
        in_groups = _steps(batches, idle_after)
    assert sum(w.height for w in at_once) > 0
    assert len(in_groups) == len(at_once)
    for got, expected in zip(in_groups, at_once, strict=True):
        assert_frame_equal(got, expected)


def test_each_group_holds_whole_devices() -> None:
    batches = _split(_devices(3), [])
    with pytest.MonkeyPatch.context() as patch:
        calls: list[int] = []
        original = closing.close

        def counting(rows, **kwargs):  # type: ignore[no-untyped-def]
            devices = set(kwargs["coded"].catalog.key_device[rows.code].tolist())
            calls.append(len(devices))
            return original(rows, **kwargs)

        patch.setattr(grouped, "GROUP_ROWS", 1)
        patch.setattr(eventtime, "close", counting)
        _steps(batches, set())
    # one device per group: six devices closed one by one in the step, again at the idle close
    assert calls == [1] * 12


def test_refusals_keep_their_arrival_order_across_groups() -> None:
    rows = _devices(3)
    late = rows.filter(pl.col("ts_ms") < 2 * Q)  # hours behind every device's watermark
    ahead = rows.tail(2).with_columns(ts_ms=pl.col("ts_ms") + NOW)  # beyond the future skew
    second = pl.concat([late.reverse(), ahead, late.head(3)])  # devices interleaved
    batches = [rows, second]
    at_once = _steps(batches, set())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grouped, "GROUP_ROWS", 1)
        in_groups = _steps(batches, set())
    refused = at_once[3]
    assert refused.height == late.height + ahead.height  # the repeats are duplicates
    assert set(refused["reason"]) == {"too_late", "future_ts"}
    assert refused["device_id"].n_unique() > 1
    for got, expected in zip(in_groups, at_once, strict=True):
        assert_frame_equal(got, expected)
