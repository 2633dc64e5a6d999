"""Each fault kind appears at its configured rate, is recorded, and is visible where recorded."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from simulators.faults import MALFORMED, MESSAGE_KINDS, inject_reading_faults
from simulators.formats.reference import ReferenceError_, parse
from simulators.run import Run

KEY = ["device_id", "metric", "ts_ms"]


def _close_to_rate(count: int, n: int, rate: float, rel: float = 0.0) -> None:
    expected = n * rate
    tolerance = 5 * math.sqrt(n * rate * (1 - rate)) + rel * expected
    assert abs(count - expected) <= tolerance, f"{count} vs {expected:.0f} ± {tolerance:.0f}"


def _count(run: Run, kind: str) -> int:
    return run.faults.filter(pl.col("kind") == kind).height


def test_reading_faults_appear_at_their_rates(faulty: Run) -> None:
    clean = faulty.clean.with_columns(i=pl.int_range(pl.len()).over("device_id", "metric"))
    gauge_delta = clean.filter(pl.col("kind").is_in(["gauge", "delta"]) & (pl.col("i") > 0)).height
    registers = clean.filter(pl.col("metric").is_in(["energy.active.import", "energy.heat"])).height
    _close_to_rate(_count(faulty, "gap"), clean.height, 0.01)
    _close_to_rate(_count(faulty, "clock_skew"), clean.height, 0.01)
    _close_to_rate(_count(faulty, "spike"), gauge_delta, 0.01, rel=0.05)
    _close_to_rate(_count(faulty, "stuck"), gauge_delta, 0.02, rel=0.15)  # runs of 4 may overlap
    _close_to_rate(_count(faulty, "unit_mistake"), registers, 0.01, rel=0.05)


def test_message_faults_appear_at_their_rates(faulty: Run) -> None:
    n = faulty.messages.filter(~pl.col("msg_id").str.ends_with("#dup")).height
    for kind in MESSAGE_KINDS:
        _close_to_rate(_count(faulty, kind), n, 0.01)
        assert faulty.messages.filter(pl.col("fault") == kind).height == _count(faulty, kind) * (
            2 if kind == "duplicate" else 1
        )


def _joined(run: Run, kind: str) -> pl.DataFrame:
    """Logged faults of a kind with the clean value, leaving out registers that were reset or wrapped
    (their later values differ from the clean feed on purpose)."""
    series = run.faults.filter(pl.col("kind").is_in(["register_reset", "rollover"])).select(
        "device_id", "metric"
    )
    log = run.faults.filter(pl.col("kind") == kind).select(*KEY, "detail")
    log = log.join(series, on=["device_id", "metric"], how="anti")
    return log.join(run.clean.select(*KEY, clean=pl.col("value")), on=KEY, how="left")


def test_gaps_are_missing_and_skewed_readings_moved(faulty: Run) -> None:
    sent = faulty.readings.select(KEY)
    gaps = _joined(faulty, "gap")
    assert gaps.join(sent, on=KEY, how="semi").height == 0
    skews = _joined(faulty, "clock_skew").with_columns(
        skew=pl.col("detail").str.extract(r"by (-?\d+) s").cast(pl.Int64)
    )
    moved = skews.with_columns(ts_ms=pl.col("ts_ms") + pl.col("skew") * 1000)
    found = moved.join(faulty.readings.select(*KEY, "value"), on=KEY, how="inner")
    assert found.height == skews.height
    np.testing.assert_allclose(found["value"], found["clean"])
    assert skews["skew"].abs().min() >= 60
    assert skews["skew"].abs().max() <= 600


def test_spikes_and_unit_mistakes_change_the_value(faulty: Run) -> None:
    sent = faulty.readings.select(*KEY, "value", "unit")
    spikes = _joined(faulty, "spike").join(sent, on=KEY)
    assert (spikes["value"] - spikes["clean"] >= 9.0).all()
    wrong = _joined(faulty, "unit_mistake").join(sent, on=KEY)
    ratio = (wrong["value"] / wrong["clean"]).to_numpy()
    assert np.all(np.isin(np.round(ratio), [1000.0, 1_000_000.0]))


def test_stuck_values_repeat_the_previous_reading(faulty: Run) -> None:
    sent = faulty.readings.sort(KEY).with_columns(
        prev=pl.col("value").shift(1).over("device_id", "metric")
    )
    stuck = faulty.faults.filter(pl.col("kind") == "stuck").select(KEY).join(sent, on=KEY)
    # the reading before a stuck one may be a gap; the held value is the last one sent or stuck
    assert (stuck["value"] == stuck["prev"]).mean() > 0.95


def test_register_resets_and_rollovers_drop_the_register(faulty: Run) -> None:
    sent = faulty.readings.sort(KEY).with_columns(
        prev=pl.col("value").shift(1).over("device_id", "metric")
    )
    for kind in ("register_reset", "rollover"):
        rows = faulty.faults.filter(pl.col("kind") == kind).select(KEY).join(sent, on=KEY)
        assert rows.height > 0
        assert (rows["value"] < rows["prev"]).all()
    wraps = (
        faulty.faults.filter(pl.col("kind") == "rollover")
        .with_columns(top=pl.col("detail").str.extract(r"at (\S+)").cast(pl.Float64))
        .select(*KEY, "top")
        .join(sent, on=KEY)
    )
    assert (wraps["prev"] > 0.9 * wraps["top"]).all()


def test_series_faults_hit_the_configured_share_of_registers() -> None:
    n_series, steps = 2000, 20
    dev = np.repeat(np.arange(n_series), steps)
    frame = pl.DataFrame(
        {
            "tenant": "t",
            "device_id": pl.Series([f"d{i:04d}" for i in dev]),
            "metric": "energy.active.import",
            "kind": "counter",
            "unit": "kWh",
            "ts_ms": np.tile(np.arange(steps, dtype=np.int64) * 900_000, n_series),
            "value": 1000.0 + np.tile(np.arange(steps, dtype=np.float64) * 2.5, n_series),
            "msg_id": "m",
        }
    )
    rates = {"register_reset": 0.2, "rollover": 0.1}
    _, log = inject_reading_faults(frame, rates, np.random.default_rng(5))
    _close_to_rate(log.filter(pl.col("kind") == "register_reset").height, n_series, 0.2)
    _close_to_rate(log.filter(pl.col("kind") == "rollover").height, n_series, 0.1)
    assert log.select("device_id").is_unique().all()  # at most one per series


def test_malformed_payloads_fail_and_the_others_parse(faulty: Run) -> None:
    for fault, topic, payload in faulty.messages.select("fault", "topic", "payload").iter_rows():
        if fault in MALFORMED:
            with pytest.raises((ReferenceError_, KeyError, TypeError)):
                parse(topic, payload.encode())
        else:
            assert parse(topic, payload.encode())


def test_wrong_tenant_publishes_on_another_prefix_as_its_own_user(faulty: Run) -> None:
    wrong = faulty.messages.filter(pl.col("fault") == "wrong_tenant")
    assert wrong.height == _count(faulty, "wrong_tenant")
    assert (wrong["topic"].str.split("/").list.get(1) != wrong["user"]).all()
    right = faulty.messages.filter(pl.col("fault") != "wrong_tenant")
    assert (right["topic"].str.split("/").list.get(1) == right["user"]).all()


def test_delivery_faults_move_delivery(faulty: Run) -> None:
    m = faulty.messages
    late = m.filter(pl.col("fault") == "late")
    assert ((late["deliver_at_ms"] - late["ts_ms"]) >= 3_600_000).all()
    normal = m.filter(pl.col("fault") == "")
    assert ((normal["deliver_at_ms"] - normal["ts_ms"]) < 3_000).all()
    dups = m.filter(pl.col("msg_id").str.ends_with("#dup"))
    originals = m.filter(pl.col("fault") == "duplicate").filter(
        ~pl.col("msg_id").str.ends_with("#dup")
    )
    assert sorted(dups["payload"]) == sorted(originals["payload"])
    ooo = m.filter(pl.col("fault") == "out_of_order").select("device_id", "ts_ms", "deliver_at_ms")
    nxt = m.filter(pl.col("fault") == "").select("device_id", "ts_ms", next_deliver="deliver_at_ms")
    later = ooo.join_asof(
        nxt.sort("ts_ms"), on="ts_ms", by="device_id", strategy="forward", allow_exact_matches=False
    ).drop_nulls("next_deliver")
    assert later.height > 0
    assert (later["deliver_at_ms"] > later["next_deliver"]).mean() > 0.9
