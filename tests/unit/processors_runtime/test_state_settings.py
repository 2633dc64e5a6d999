"""State rebuilt from stored readings continues exactly like the uninterrupted state; settings."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pilotstream.contracts import ReadingBatch
from pilotstream.errors import SettingsError
from processors.kernels import EventTimeParams, EventTimeState, decode_batches, step
from processors.settings import ProcessorSettings
from processors.state import merge, partition_of, rebuild

T0 = 1_767_225_600_000
MIN = 60_000


def _frame(device: str, minutes: range, kind: str = "counter") -> pl.DataFrame:
    ts = [T0 + m * MIN for m in minutes]
    metric = "energy.active.import" if kind == "counter" else "power.active"
    return decode_batches(
        [
            ReadingBatch(
                tenant="paris-energy-1",
                city="paris",
                device_id=device,
                gateway_id="gw",
                received_at_ms=T0,
                metric=[metric] * len(ts),
                ts_ms=ts,
                value=[100 + 0.3 * m + (m % 5) * (kind == "gauge") for m in minutes],
                unit=["kWh"] * len(ts),
                kind=[kind] * len(ts),
                seq=[-1] * len(ts),
            )
        ]
    )


@pytest.mark.parametrize("kind", ["counter", "gauge"])
def test_rebuilt_state_continues_like_the_original(kind: str) -> None:
    params = EventTimeParams()
    now = T0 + 86_400_000
    held = range(975, 980)  # sent late, within the lateness
    history = _frame("a", range(1, 1000), kind).filter(
        ~((pl.col("ts_ms") - T0) // MIN).is_in(list(held))
    )
    original = step(EventTimeState(), history, now_ms=now, params=params).state
    # what processors.state.load_history reads back: the tail from the cut on
    wm = int(history["ts_ms"].max())
    widest = 3_600_000
    cut = (wm - params.allowed_lateness_ms - widest) // widest * widest - 6 * widest
    assert cut > T0 + 5 * widest  # the rebuild really starts from a partial history
    rebuilt = rebuild(history.filter(pl.col("ts_ms") >= cut), now_ms=now, params=params)
    produced = 0
    for batch in (_frame("a", range(1000, 1120), kind), _frame("a", held, kind)):
        a = step(original, batch, now_ms=now, params=params)
        b = step(rebuilt, batch, now_ms=now, params=params)
        assert_frame_equal(a.windows, b.windows)
        assert_frame_equal(a.rejected, b.rejected)
        original, rebuilt = a.state, b.state
        produced += a.windows.height
    assert produced > 0
    assert (a.windows["revision"] == 2).all()  # the late readings restated their windows


def test_merge_keeps_both_devices() -> None:
    params = EventTimeParams()
    one = step(EventTimeState(), _frame("a", range(1, 50)), now_ms=T0 + 10**8, params=params).state
    two = step(EventTimeState(), _frame("b", range(1, 50)), now_ms=T0 + 10**8, params=params).state
    both = merge(one, two)
    assert sorted(both.watermarks["device_id"].to_list()) == ["a", "b"]
    assert both.buffer.height == one.buffer.height + two.buffer.height


def test_partition_of_matches_the_java_default_partitioner() -> None:
    # murmur2 of the key, positive, modulo the partition count (Kafka's DefaultPartitioner)
    parts = {partition_of(f"dev-{i}", 6) for i in range(100)}
    assert parts == set(range(6))
    assert partition_of("dev-1", 6) == partition_of("dev-1", 6)


def test_settings_refuse_unsafe_values() -> None:
    s = ProcessorSettings.load(env={"PILOTSTREAM_POLL_MAX_RECORDS": "500"})
    assert s.poll_max_records == 500
    assert s.group_id == "pilotstream-processors"
    with pytest.raises(SettingsError, match="deltas_topic"):
        ProcessorSettings.load(env={}, overrides={"deltas_topic": s.readings_topic})
    with pytest.raises(SettingsError, match="min_coverage"):
        ProcessorSettings.load(env={"PILOTSTREAM_MIN_COVERAGE": "1.5"})
    with pytest.raises(SettingsError, match="session_timeout_ms"):
        ProcessorSettings.load(env={"PILOTSTREAM_SESSION_TIMEOUT_MS": "100"})
    with pytest.raises(SettingsError, match="partition_fetch_bytes"):  # above the whole fetch
        ProcessorSettings.load(
            env={"PILOTSTREAM_FETCH_MAX_BYTES": "1000", "PILOTSTREAM_PARTITION_FETCH_BYTES": "2000"}
        )
