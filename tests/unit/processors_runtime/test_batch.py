"""Poll -> commit payload mapping of BatchProcessor, with a fake writer and baseline provider."""

from __future__ import annotations

import polars as pl
import pytest

from pilotstream.codec import encode
from pilotstream.contracts import ReadingBatch
from pilotstream.registry import load_registry
from processors.batch import BatchProcessor, Record
from processors.factors import load_factors
from processors.kernels import EventTimeParams

from .fakes import FakeWriter, FixedBaseline

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
MIN = 60_000
TOPIC = "t.readings"


def _batch(
    device: str, minutes: range, *, tenant: str = "paris-energy-1", rate: float = 0.5
) -> ReadingBatch:
    ts = [T0 + m * MIN for m in minutes]
    return ReadingBatch(
        tenant=tenant,
        city="paris",
        device_id=device,
        gateway_id="gw",
        received_at_ms=T0,
        metric=["energy.active.import"] * len(ts),
        ts_ms=ts,
        value=[100 + rate * m for m in minutes],
        unit=["kWh"] * len(ts),
        kind=["counter"] * len(ts),
        seq=[-1] * len(ts),
    )


def _processor(writer: FakeWriter, provider: FixedBaseline) -> BatchProcessor:
    proc = BatchProcessor(
        writer=writer,
        provider=provider,
        registry=load_registry(),
        factors=load_factors(),
        params=EventTimeParams(),
        topic=TOPIC,
        group="g",
    )
    proc.assign([0, 1], generation=7, offsets={0: 0, 1: 10})
    return proc


def _records(batches: list[ReadingBatch | bytes], first_offset: int = 0) -> list[Record]:
    return [
        Record(first_offset + i, b"k", b if isinstance(b, bytes) else encode(b), T0)
        for i, b in enumerate(batches)
    ]


async def test_one_poll_is_one_commit_with_offsets_readings_windows() -> None:
    writer, provider = FakeWriter(), FixedBaseline(baseline=40.0, reporting_from_ms=T0)
    proc = _processor(writer, provider)
    polled = {
        0: _records([_batch("a", range(1, 91))]),
        1: _records([_batch("b", range(1, 31))], 10),
    }
    result = await proc.process(polled, now_ms=T0 + 10 * 60 * MIN)
    assert len(writer.commits) == 1
    c = writer.commits[0]
    assert c["offsets"] == {(TOPIC, 0): 1, (TOPIC, 1): 11}
    assert (c["group"], c["generation"]) == ("g", 7)
    assert c["readings"].height == 120
    assert c["rejections"] is None
    w = c["windows"].sort("device_id", "width_s", "bucket_start_ms")
    # device a: quarters 0-4 closed (watermark minute 90 passed their end), hour 0 closed
    quarters = w.filter(pl.col("device_id") == "a", pl.col("width_s") == 900)
    assert quarters["bucket_start_ms"].to_list() == [T0 + q * 15 * MIN for q in range(5)]
    assert quarters["actual"].to_list() == pytest.approx([7.0, 7.5, 7.5, 7.5, 7.5])
    assert quarters["baseline"].to_list() == pytest.approx([10.0] * 5)
    assert quarters["delta"].to_list() == pytest.approx([3.0, 2.5, 2.5, 2.5, 2.5])
    grid_fr = 0.056  # kg/kWh, DOMAIN.md §2 (the packaged seed)
    assert quarters["avoided_co2e_kg"].to_list() == pytest.approx(
        [d * grid_fr for d in [3.0, 2.5, 2.5, 2.5, 2.5]], rel=1e-3
    )
    assert set(quarters["baseline_model_id"]) == {"fixed"}
    assert result.readings == 120
    assert len(result.deltas) == w.height
    assert {d.revision for d in result.deltas} == {1}


async def test_before_the_intervention_nothing_is_avoided() -> None:
    writer, provider = (
        FakeWriter(),
        FixedBaseline(baseline=40.0, reporting_from_ms=T0 + 10 * 3600_000),
    )
    proc = _processor(writer, provider)
    result = await proc.process(
        {0: _records([_batch("a", range(1, 91))])}, now_ms=T0 + 10 * 60 * MIN
    )
    w = writer.commits[0]["windows"]
    assert len(result.deltas) == w.height
    assert all(d.baseline == d.actual and d.delta == 0 for d in result.deltas)
    assert w.height > 0
    assert (w["delta"] == 0).all()
    assert (w["avoided_co2e_kg"] == 0).all()
    assert (w["baseline"] == w["actual"]).all()  # no baseline: stored as the actual


async def test_bad_records_future_and_redelivered_offsets() -> None:
    writer, provider = FakeWriter(), FixedBaseline(baseline=1.0)
    proc = _processor(writer, provider)
    future = _batch("f", range(1, 3))
    polled = {1: _records([b"{oops", future], 8) + _records([_batch("c", range(1, 4))], 10)}
    await proc.process(polled, now_ms=T0)  # offsets 8, 9 are below the partition's floor (10)
    c = writer.commits[0]
    assert c["offsets"] == {(TOPIC, 1): 11}
    assert c["rejections"] is None
    assert c["readings"]["device_id"].unique().to_list() == ["c"]
    polled = {1: _records([b"{oops", future], 11)}
    await proc.process(polled, now_ms=T0 - 3600_000)
    r = writer.commits[1]["rejections"].sort("reason")
    assert r["reason"].to_list() == ["bad_batch", "future_ts", "future_ts"]
    assert r["payload"][0] == b"{oops"
    assert r["payload_size"].to_list()[0] == 5
    assert writer.commits[1]["offsets"] == {(TOPIC, 1): 13}
    assert writer.commits[1]["readings"].height == 0


async def test_nul_bytes_are_refused_as_bad_reading_and_infinity_as_bad_batch() -> None:
    writer, provider = FakeWriter(), FixedBaseline(baseline=1.0)
    proc = _processor(writer, provider)
    clean, nul = _batch("c", range(1, 4)), _batch("n\x00ul", range(1, 3))
    huge = encode(_batch("h", range(1, 3))).replace(b"100.5", b"1e999")  # JSON for infinity
    await proc.process({0: _records([clean, nul, huge])}, now_ms=T0)
    c = writer.commits[0]
    assert c["readings"]["device_id"].to_list() == ["c"] * 3
    r = c["rejections"].sort("reason", "device_id")
    # the decoder refuses an infinite value with its whole record
    assert r["reason"].to_list() == ["bad_batch", "bad_reading", "bad_reading"]
    assert r["device_id"].to_list()[1:] == ["nul", "nul"]  # NUL removed for the database
    # the clean path (no escaped NUL in any record, every value finite) refuses nothing
    await proc.process({0: _records([_batch("c", range(4, 6))], 3)}, now_ms=T0)
    assert writer.commits[1]["rejections"] is None


async def test_a_reading_repeated_in_a_poll_is_written_once() -> None:
    writer, provider = FakeWriter(), FixedBaseline(baseline=1.0)
    proc = _processor(writer, provider)
    twice = _batch("d", range(1, 4))
    await proc.process({0: _records([twice, _batch("e", range(1, 3)), twice])}, now_ms=T0)
    stored = writer.commits[0]["readings"]
    assert stored.height == 5
    assert stored.select("device_id", "ts_ms").is_unique().all()
    # a repeat of an earlier poll's reading goes to the writer, which skips stored keys
    await proc.process({0: _records([_batch("d", range(3, 5))], 3)}, now_ms=T0)
    assert writer.commits[1]["readings"]["ts_ms"].to_list() == [T0 + 3 * MIN, T0 + 4 * MIN]


async def test_close_idle_commits_the_last_windows_without_offsets() -> None:
    writer, provider = FakeWriter(), FixedBaseline(baseline=1.0)
    proc = _processor(writer, provider)
    await proc.process({0: _records([_batch("a", range(1, 11))])}, now_ms=T0)
    assert writer.commits[0]["windows"] is None  # the first quarter is still open
    result = await proc.close_idle(now_ms=T0 + 3600_000, idle_ms=900_000)
    c = writer.commits[1]
    assert c["offsets"] == {}
    assert sorted(c["windows"]["width_s"].to_list()) == [900, 3600]
    assert result.windows == 2
