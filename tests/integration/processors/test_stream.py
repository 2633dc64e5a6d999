"""Stream equals batch, late data and bad records, through a real processor process."""

from __future__ import annotations

import random

import pytest
from polars.testing import assert_frame_equal

from pilotstream.contracts import ReadingBatch
from processors.kernels import EventTimeParams

from .conftest import Lane
from .feed import (
    HOUR_MS,
    TENANT,
    counter_feed,
    one_pass,
    process_cmd,
    produce,
    scalar,
    spawn,
    split_random,
    start_ms,
    stored_windows,
)

pytestmark = pytest.mark.integration


def _run(lane: Lane, idle_s: float = 3.0) -> None:
    proc = spawn(process_cmd(lane, idle_s))
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err.decode()[-3000:]


async def test_stream_equals_one_pass(lane: Lane) -> None:
    feed = counter_feed(40, 180, t0=start_ms())
    rng = random.Random(7)
    pieces = split_random(feed, rng)
    await produce(lane.bootstrap, lane.topic, pieces)
    _run(lane)
    offsets = scalar(lane.dsn, "SELECT sum(next_offset) FROM consumer_offsets")
    assert offsets == len(pieces)
    expected = one_pass(feed, EventTimeParams())
    result = stored_windows(lane.dsn)
    assert result.height == expected.height == 40 * (12 + 3)
    assert_frame_equal(result, expected, check_exact=False, rel_tol=1e-9)
    assert scalar(lane.dsn, "SELECT count(*) FROM readings") == 40 * 180
    assert _reasons(lane) == {}
    assert scalar(lane.dsn, "SELECT count(*) FROM consumer_offsets WHERE next_offset > 0") > 0


async def test_late_data_restates_and_too_late_is_rejected(lane: Lane) -> None:
    t0 = start_ms()
    feed = counter_feed(1, 240, t0=t0)  # 4 hours of one device, 1-minute counter
    b = feed[0]
    hold = {14}  # the last reading of the first quarter-hour, sent late
    on_time = [i for i in range(240) if i not in hold and i < 100]
    late_ok = list(range(100, 240))
    first = _pick(b, on_time)
    await produce(lane.bootstrap, lane.topic, [first])
    _run(lane)
    # the first quarter-hour window closed without its last reading (minute 15)
    before = stored_windows(lane.dsn).filter(bucket_start_ms=t0, width_s=900)
    assert before["actual"].item() == pytest.approx(0.01 * 13)
    # within the lateness: the held readings restate the window (revision 2)
    await produce(lane.bootstrap, lane.topic, [_pick(b, sorted(hold))])
    _run(lane)
    with_rev = _revision(lane, t0)
    assert with_rev == (2, pytest.approx(0.01 * 14))
    # push the watermark 3 h on, then a reading of the first hour is too late
    await produce(lane.bootstrap, lane.topic, [_pick(b, late_ok)])
    _run(lane)
    stale = ReadingBatch(
        tenant=TENANT,
        city="paris",
        device_id=b.device_id,
        gateway_id="gw-test",
        received_at_ms=t0,
        metric=["energy.active.import"],
        ts_ms=[t0 + 30_500],
        value=[100.005],
        unit=["kWh"],
        kind=["counter"],
        seq=[-1],
    )
    await produce(lane.bootstrap, lane.topic, [stale, b"{not json"], key=b.device_id.encode())
    _run(lane)
    assert scalar(lane.dsn, "SELECT count(*) FROM rejections WHERE reason = 'too_late'") == 1
    assert scalar(lane.dsn, "SELECT count(*) FROM rejections WHERE reason = 'bad_batch'") == 1
    assert scalar(lane.dsn, "SELECT count(*) FROM readings") == 240
    assert _revision(lane, t0)[0] == 2  # the too-late reading changed nothing


def _reasons(lane: Lane) -> dict[str, object]:
    import psycopg

    with psycopg.connect(lane.dsn) as conn:
        rows = conn.execute(
            "SELECT reason, count(*), min(detail) FROM rejections GROUP BY 1"
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _revision(lane: Lane, t0: int) -> tuple[int, float]:
    import psycopg

    with psycopg.connect(lane.dsn) as conn:
        row = conn.execute(
            "SELECT revision, actual FROM window_results WHERE width_s = 900 "
            "AND bucket_start = to_timestamp(%s / 1000.0)",
            (t0,),
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def _pick(b: ReadingBatch, idx: list[int]) -> ReadingBatch:
    return ReadingBatch(
        tenant=b.tenant,
        city=b.city,
        device_id=b.device_id,
        gateway_id=b.gateway_id,
        received_at_ms=b.received_at_ms,
        metric=[b.metric[i] for i in idx],
        ts_ms=[b.ts_ms[i] for i in idx],
        value=[b.value[i] for i in idx],
        unit=[b.unit[i] for i in idx],
        kind=[b.kind[i] for i in idx],
        seq=[b.seq[i] for i in idx],
    )


assert HOUR_MS == 3_600_000


async def test_changed_windows_are_published_as_deltas(lane: Lane) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from pilotstream.codec import decode_delta

    deltas_topic = lane.topic + ".deltas"
    await produce(lane.bootstrap, lane.topic, counter_feed(5, 90, t0=start_ms()))
    cmd = process_cmd(lane, 3.0)
    cmd[cmd.index("--publish-deltas") + 1] = "true"
    proc = spawn([*cmd, "--deltas-topic", deltas_topic])
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err.decode()[-3000:]
    consumer = AIOKafkaConsumer(
        deltas_topic, bootstrap_servers=lane.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=5000, max_records=10_000)
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=lane.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([deltas_topic])
    finally:
        await admin.close()
    deltas = [decode_delta(m.value) for msgs in got.values() for m in msgs]
    stored = stored_windows(lane.dsn)
    assert len(deltas) == stored.height == 5 * (6 + 2)
    assert {d.revision for d in deltas} == {1}
    assert {(d.device_id, d.width_s, d.bucket_start_ms) for d in deltas} == set(
        stored.select("device_id", "width_s", "bucket_start_ms").iter_rows()
    )
