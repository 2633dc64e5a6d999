"""Event time: closing, restating, refusing; the same readings in any batches give one pass's results."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from processors.kernels import EventTimeParams, EventTimeState, close_idle, step
from processors.kernels import flags as qf
from processors.kernels.closing import cleaning_fingerprint
from processors.kernels.state import UNCLEANED

from .simdata import readings

Q = 900_000
H = 3_600_000
E = "energy.active.import"
NOW = 10**13
PARAMS = EventTimeParams(allowed_lateness_ms=H)
INTERVALS = pl.DataFrame(
    {"device_id": ["a", "a", "b"], "metric": [E, "weather.temperature", E], "interval_ms": [Q] * 3}
)


def _counter(device: str, n: int, start: int = 0) -> pl.DataFrame:
    return readings([(device, E, "counter", start + i * Q, float(2 * i)) for i in range(n)])


def _run(batches: list[pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    state = EventTimeState(intervals=INTERVALS)
    out, rejected = [], []
    for b in batches:
        r = step(state, b, now_ms=NOW, params=PARAMS)
        state = r.state
        out.append(r.windows)
        rejected.append(r.rejected)
    r = close_idle(state, now_ms=NOW, idle_ms=0, params=PARAMS)
    out.append(r.windows)
    return pl.concat(out), pl.concat(rejected)


def _latest(windows: pl.DataFrame) -> pl.DataFrame:
    key = ["width_s", "device_id", "metric", "bucket_start_ms"]
    return windows.sort([*key, "revision"]).group_by(key, maintain_order=True).last().sort(key)


def test_windows_close_only_when_the_watermark_passes() -> None:
    r = step(EventTimeState(intervals=INTERVALS), _counter("a", 6), now_ms=NOW, params=PARAMS)
    # watermark 1:15; the 15-min windows up to 1:00 closed (0:00 has no amount: first reading)
    assert r.windows.filter(pl.col("width_s") == 900)["bucket_start_ms"].to_list() == [
        0,
        Q,
        2 * Q,
        3 * Q,
    ]
    assert r.windows.filter(pl.col("width_s") == 3600)["bucket_start_ms"].to_list() == [0]
    assert (r.windows["revision"] == 1).all()
    r2 = close_idle(r.state, now_ms=NOW, idle_ms=0, params=PARAMS)
    assert r2.windows.filter(pl.col("width_s") == 900)["bucket_start_ms"].to_list() == [4 * Q]
    assert r2.windows.filter(pl.col("width_s") == 3600)["bucket_start_ms"].to_list() == [H]


def test_idle_close_waits_for_the_idle_time() -> None:
    r = step(EventTimeState(intervals=INTERVALS), _counter("a", 3), now_ms=NOW, params=PARAMS)
    assert close_idle(r.state, now_ms=NOW + 5_000, idle_ms=10_000, params=PARAMS).windows.is_empty()
    idle = close_idle(r.state, now_ms=NOW + 20_000, idle_ms=10_000, params=PARAMS)
    assert not idle.windows.is_empty()


def test_late_reading_within_lateness_restates_with_next_revision() -> None:
    first = _counter("a", 9).filter(pl.col("ts_ms") != 2 * Q)  # 0:30 arrives late
    r = step(EventTimeState(intervals=INTERVALS), first, now_ms=NOW, params=PARAMS)
    hour0 = r.windows.filter((pl.col("width_s") == 3600) & (pl.col("bucket_start_ms") == 0))
    assert hour0["n_readings"].to_list() == [3]
    assert hour0["revision"].to_list() == [1]
    late = readings([("a", E, "counter", 2 * Q, 4.0)])
    r2 = step(r.state, late, now_ms=NOW, params=PARAMS)
    assert r2.rejected.is_empty()
    restated = r2.windows.sort("width_s", "bucket_start_ms")
    result = restated.select("width_s", "bucket_start_ms", "actual", "n_readings", "revision")
    expected = pl.DataFrame(
        {
            "width_s": [900, 900, 3600],
            "bucket_start_ms": [Q, 2 * Q, 0],
            "actual": [2.0, 2.0, 8.0],
            "n_readings": [1, 1, 4],
            "revision": [1, 2, 2],  # 0:15 had no reading before: its first result
        },
        schema=result.schema,
    )
    assert_frame_equal(result, expected)


def test_reading_beyond_lateness_is_rejected_too_late_never_dropped() -> None:
    r = step(EventTimeState(intervals=INTERVALS), _counter("a", 20), now_ms=NOW, params=PARAMS)
    late = readings([("a", E, "counter", 0 + 1, 0.5)])
    r2 = step(r.state, late, now_ms=NOW, params=PARAMS)
    assert r2.windows.is_empty()
    assert r2.rejected["reason"].to_list() == ["too_late"]
    assert r2.rejected["ts_ms"].to_list() == [1]


def test_future_readings_are_rejected_and_duplicates_counted() -> None:
    frame = pl.concat(
        [
            _counter("a", 3),
            _counter("a", 2),
            readings([("a", E, "counter", NOW + 10 * PARAMS.max_future_ms, 9.0)]),
        ]
    )
    r = step(EventTimeState(intervals=INTERVALS), frame, now_ms=NOW, params=PARAMS)
    assert r.duplicates == 2
    assert r.rejected["reason"].to_list() == ["future_ts"]
    again = step(r.state, _counter("a", 3), now_ms=NOW, params=PARAMS)
    assert again.duplicates == 3


def _device_stream(seed: int) -> list[pl.DataFrame]:
    """Per-device, time-ordered readings of two devices (counter with glitches and a reset, a
    gauge)."""
    rng = np.random.default_rng(seed)
    n = 40
    ts = np.arange(n) * Q + rng.integers(0, 2, n)  # some jitter
    energy = np.cumsum(rng.uniform(0.1, 5, n))
    energy[25:] -= energy[24]  # reset
    energy[[3 + seed, 11]] *= 1000.0  # Wh numbers labelled kWh (one on a window's last reading)
    energy[30] = 0.5 * energy[29]  # a low glitch after the reset
    if seed == 1:  # the first reading a x1000 glitch: the drop after it is no reset
        energy[0] *= 1000.0
    temp = 10 + rng.normal(0, 1, n)
    a = readings(
        [("a", E, "counter", int(t), float(v)) for t, v in zip(ts, energy, strict=True)]
        + [
            ("a", "weather.temperature", "gauge", int(t) + Q // 2, float(v))  # pushes the watermark
            for t, v in zip(ts, temp, strict=True)
        ]
    ).sort("ts_ms", "metric")
    b = _counter("b", 30, start=5 * Q)
    return [a, b]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 3),
    cuts_a=st.lists(st.integers(1, 79), max_size=6, unique=True),
    cuts_b=st.lists(st.integers(1, 29), max_size=4, unique=True),
    order=st.randoms(use_true_random=False),
)
def test_stream_equals_batch(seed: int, cuts_a: list[int], cuts_b: list[int], order) -> None:
    a, b = _device_stream(seed)
    one_pass, _ = _run([pl.concat([a, b])])
    pieces_a = _split(a, sorted(cuts_a))
    pieces_b = _split(b, sorted(cuts_b))
    # interleave the two devices' pieces at random, each device keeping its own order
    batches = []
    while pieces_a or pieces_b:
        src = pieces_a if (pieces_a and (not pieces_b or order.random() < 0.5)) else pieces_b
        batches.append(src.pop(0))
        if order.random() < 0.3 and len(batches) >= 2:  # two partitions in one poll
            batches[-2:] = [pl.concat(batches[-2:])]
    streamed, rejected = _run(batches)
    assert rejected.is_empty()
    assert (one_pass["revision"] == 1).all()
    assert_frame_equal(_latest(streamed), _latest(one_pass))
    assert (streamed["revision"] == 1).all()  # in-order data never restates


def _split(frame: pl.DataFrame, cuts: list[int]) -> list[pl.DataFrame]:
    edges = [0, *cuts, frame.height]
    return [frame.slice(s, e - s) for s, e in itertools.pairwise(edges) if e > s]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 3),
    swaps=st.lists(st.integers(0, 78), max_size=8),
    cuts=st.lists(st.integers(1, 79), max_size=5, unique=True),
)
def test_late_data_within_lateness_restates_to_the_one_pass_result(
    seed: int, swaps: list[int], cuts: list[int]
) -> None:
    a, _ = _device_stream(seed)
    order = list(range(a.height))
    for i in swaps:  # delay a reading by one position: at most 15 minutes late
        order[i], order[i + 1] = order[i + 1], order[i]
    shuffled = a[order]
    one_pass, _ = _run([a])
    streamed, rejected = _run(_split(shuffled, sorted(cuts)))
    assert rejected.is_empty()
    assert_frame_equal(_latest(streamed).drop("revision"), _latest(one_pass).drop("revision"))


def test_state_rebuilt_from_stored_rows_continues_like_one_pass() -> None:
    from processors.kernels import rebuild_state

    a, b = _device_stream(2)
    both = pl.concat([a, b])
    one_pass, _ = _run([both])
    first = pl.concat([a.head(50), b.head(12)])
    second = pl.concat([a.slice(50), b.slice(12)])
    r = step(EventTimeState(intervals=INTERVALS), first, now_ms=NOW, params=PARAMS)
    # what the sink stored: every accepted reading, the latest result per window
    state = rebuild_state(first, _latest(r.windows), now_ms=NOW, params=PARAMS, intervals=INTERVALS)
    r2 = step(state, second, now_ms=NOW, params=PARAMS)
    r3 = close_idle(r2.state, now_ms=NOW, idle_ms=0, params=PARAMS)
    streamed = pl.concat([r.windows, r2.windows, r3.windows])
    assert_frame_equal(_latest(streamed), _latest(one_pass))


def test_untouched_devices_keep_their_state_rows_unchanged() -> None:
    a, b = _device_stream(1)
    r = step(
        EventTimeState(intervals=INTERVALS), pl.concat([a.head(40), b]), now_ms=NOW, params=PARAMS
    )
    r2 = step(r.state, a.slice(40), now_ms=NOW, params=PARAMS)  # only device a
    assert set(r2.windows["device_id"].to_list()) == {"a"}
    key = ["device_id", "metric", "ts_ms"]
    before_b = r.state.buffer.filter(pl.col("device_id") == "b").sort(key)
    assert_frame_equal(r2.state.buffer.filter(pl.col("device_id") == "b").sort(key), before_b)
    wm_b = r2.state.watermarks.filter(pl.col("device_id") == "b")
    assert_frame_equal(wm_b, r.state.watermarks.filter(pl.col("device_id") == "b"))


def test_concatenated_states_in_any_row_order_continue_like_one_state() -> None:
    a, b = _device_stream(3)
    first = pl.concat([a.head(30), b.head(10)])
    one = step(EventTimeState(intervals=INTERVALS), first, now_ms=NOW, params=PARAMS).state
    part_a = step(EventTimeState(intervals=INTERVALS), a.head(30), now_ms=NOW, params=PARAMS)
    part_b = step(EventTimeState(), b.head(10), now_ms=NOW, params=PARAMS)
    s_a, s_b = part_a.state, part_b.state
    glued = EventTimeState(  # as processors.state.merge builds it, rows shuffled on top
        buffer=pl.concat([s_b.buffer, s_a.buffer]).sample(fraction=1.0, shuffle=True, seed=4),
        emitted=pl.concat([s_b.emitted, s_a.emitted]).sample(fraction=1.0, shuffle=True, seed=5),
        watermarks=pl.concat([s_b.watermarks, s_a.watermarks]),
        intervals=pl.concat([s_a.intervals, s_b.intervals]),
    )
    rest = pl.concat([a.slice(30), b.slice(10)])
    expected = step(one, rest, now_ms=NOW, params=PARAMS)
    result = step(glued, rest, now_ms=NOW, params=PARAMS)
    assert expected.windows.height > 0
    assert_frame_equal(result.windows, expected.windows)
    assert_frame_equal(result.rejected, expected.rejected)


def test_interleaving_devices_within_a_batch_does_not_matter() -> None:
    a, b = _device_stream(0)
    interleaved = pl.concat([a, b]).sort("ts_ms", "metric")  # devices alternate row by row
    grouped = pl.concat([b, a])  # one device after the other, each in its own order
    one, _ = _run([interleaved])
    two, _ = _run([grouped])
    assert one.height > 0
    assert_frame_equal(one, two)


def test_lateness_is_judged_in_arrival_order_wherever_batches_are_cut() -> None:
    newer = _counter("a", 20)  # 0:00 .. 4:45
    late = readings([("a", E, "counter", 1, 0.5)])  # arrives after them, hours behind
    one_batch = step(
        EventTimeState(intervals=INTERVALS), pl.concat([newer, late]), now_ms=NOW, params=PARAMS
    )
    assert one_batch.rejected["reason"].to_list() == ["too_late"]  # as if it came in a later poll
    windows, rejected = _run([newer.head(7), pl.concat([newer.slice(7), late])])
    assert rejected["reason"].to_list() == ["too_late"]
    single, _ = _run([pl.concat([newer, late])])
    assert_frame_equal(_latest(windows), _latest(single))


def test_a_poll_with_several_records_per_device_judges_lateness_in_arrival_order() -> None:
    a, b = _counter("a", 20), _counter("b", 20)  # 0:00 .. 4:45 each
    # two records per device, devices interleaved, as a full poll of the readings topic holds
    poll = pl.concat([a.head(10), b.head(10), a.slice(10), b.slice(10)])
    windows, rejected = _run([poll])
    assert rejected.is_empty()
    single, _ = _run([pl.concat([a, b])])
    assert_frame_equal(_latest(windows), _latest(single))
    # a reading of a that arrives after a's second record, hours behind it: too late, although
    # the rows between it and that record (in time order) are b's and the buffer's
    late = readings([("a", E, "counter", 1, 0.5)])
    _, rejected = _run([a.head(7), pl.concat([b.head(10), a.slice(7), late, b.slice(10)])])
    assert rejected["reason"].to_list() == ["too_late"]


def test_window_of_a_counter_glitch_waits_for_the_next_reading() -> None:
    values = [0.0, 2.0, 4.0, 6000.0, 8.0, 10.0]  # reading 3 (0:45) is a x1000 glitch
    counter = readings([("a", E, "counter", i * Q, v) for i, v in enumerate(values)])
    gauge = readings([("a", "weather.temperature", "gauge", 3 * Q + Q // 2, 9.0)])
    one_pass, _ = _run([pl.concat([counter, gauge])])
    # the gauge pushes the watermark past 0:45 before the counter's 1:00 reading arrives
    first = step(
        EventTimeState(intervals=INTERVALS),
        pl.concat([counter.head(4), gauge]),
        now_ms=NOW,
        params=PARAMS,
    )
    quarter = first.windows.filter((pl.col("width_s") == 900) & (pl.col("metric") == E))
    assert quarter["bucket_start_ms"].to_list() == [0, Q]  # 0:30-0:45 waits for its successor
    streamed, _ = _run([pl.concat([counter.head(4), gauge]), counter.slice(4)])
    assert (streamed["revision"] == 1).all()
    assert_frame_equal(_latest(streamed), _latest(one_pass))
    hour = _latest(streamed).filter((pl.col("width_s") == 3600) & (pl.col("metric") == E))
    assert hour["actual"].to_list() == [8.0, 2.0]  # 0:00-1:00 keeps 0:45's 2 kWh, one reading late


def test_window_of_a_delta_spike_waits_for_the_next_reading() -> None:
    c = "traffic.count.car"
    counts = [10.0, 12.0, 11.0, 400.0, 12.0, 9.0]  # reading 3 (0:45) is a spike
    deltas = readings([("a", c, "delta", i * Q, v) for i, v in enumerate(counts)])
    gauge = readings([("a", "weather.temperature", "gauge", 3 * Q + Q // 2, 9.0)])
    one_pass, _ = _run([pl.concat([deltas, gauge])])
    streamed, _ = _run([pl.concat([deltas.head(4), gauge]), deltas.slice(4)])
    assert (streamed["revision"] == 1).all()
    assert_frame_equal(_latest(streamed), _latest(one_pass))
    quarter = _latest(streamed).filter((pl.col("width_s") == 900) & (pl.col("metric") == c))
    assert quarter["flags"].to_list()[3] & qf.SPIKE


def _steps(batches: list[pl.DataFrame], idle_after: set[int]) -> list[pl.DataFrame]:
    """Every step's windows and rejections, with an idle close after the batches in
    ``idle_after`` and at the end."""
    state = EventTimeState(intervals=INTERVALS.head(1))  # b's interval is inferred, then frozen
    out = []
    for i, b in enumerate(batches):
        r = step(state, b, now_ms=NOW, params=PARAMS)
        out += [r.windows, r.rejected]
        state = r.state
        if i in idle_after:
            r = close_idle(state, now_ms=NOW, idle_ms=0, params=PARAMS)
            out.append(r.windows)
            state = r.state
    out.append(close_idle(state, now_ms=NOW, idle_ms=0, params=PARAMS).windows)
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 3),
    delays=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 12)), max_size=6),
    cuts=st.lists(st.integers(1, 109), max_size=8, unique=True),
    idle_after=st.sets(st.integers(0, 8), max_size=2),
)
def test_windows_skipped_as_unchanged_are_those_a_full_rebuild_leaves_unchanged(
    seed: int, delays: list[tuple[int, int]], cuts: list[int], idle_after: set[int]
) -> None:
    from processors.kernels import closing

    a, b = _device_stream(seed)
    both = pl.concat([a, b]).sort("ts_ms")
    order = list(range(both.height))
    for i, by in delays:  # late readings, some beyond the lateness
        order.insert(i + by, order.pop(i))
    batches = _split(both[order], sorted(cuts))
    skipping = _steps(batches, idle_after)
    with pytest.MonkeyPatch.context() as patch:  # every window rebuilt and compared
        patch.setattr(closing, "_may_change", lambda rows, live, *args: live)
        rebuilding = _steps(batches, idle_after)
    assert len(skipping) == len(rebuilding)
    for result, expected in zip(skipping, rebuilding, strict=True):
        assert_frame_equal(result, expected)


def test_cleaning_fingerprint_tells_every_cleaning_apart() -> None:
    # a row's amount, flags and counter predecessor, as the buffer remembers them in one number
    amount = np.array([1.5, 1.5, 1.5, np.nan, 1.5, 1.5, -0.0, 0.0, 1.5])
    flags = np.array([0, 0, 16, 0, 0, 0, 0, 0, 1023])
    since = np.array([60_000, 60_001, 60_000, 60_000, -1, -2, 60_000, 60_000, 60_000])
    fp = cleaning_fingerprint(amount, flags, since)
    assert fp.dtype == np.uint64
    assert len(set(fp.tolist())) == len(fp)  # each differs from the others in one thing
    assert (fp != UNCLEANED["cleaned"]).all()  # a new row never looks cleaned
    # the same cleaning, NaN included (any NaN pattern), gives the same number
    again = cleaning_fingerprint(
        np.array([np.nan, -np.nan, 1.5]), np.array([0, 0, 16]), np.array([60_000] * 3)
    )
    assert again[0] == again[1] == fp[3]
    assert again[2] == fp[2]
