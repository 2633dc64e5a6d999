"""Effectively-once under ``kill -9`` and scale-out with a member killed mid-stream."""

from __future__ import annotations

import random
import signal
import time

import pytest
from polars.testing import assert_frame_equal

from processors.kernels import EventTimeParams

from .conftest import Lane
from .feed import (
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

DEVICES, PER_DEVICE = 100, 500  # 50,000 readings


def _feed(seed: int) -> tuple[list, list]:
    feed = counter_feed(DEVICES, PER_DEVICE, t0=start_ms(24))
    return feed, split_random(feed, random.Random(seed), max_len=30)


def _assert_exact(lane: Lane, feed: list, records: int, logs: str = "") -> None:
    stored = scalar(lane.dsn, "SELECT count(*) FROM readings")
    refused = scalar(lane.dsn, "SELECT count(*) FROM rejections")
    offsets = scalar(lane.dsn, "SELECT sum(next_offset) FROM consumer_offsets")
    assert (stored, refused, offsets) == (DEVICES * PER_DEVICE, 0, records), logs[-6000:]
    got, want = stored_windows(lane.dsn), one_pass(feed, EventTimeParams())
    key = ["device_id", "metric", "width_s", "bucket_start_ms"]
    missing = want.join(got, on=key, how="anti")
    assert missing.is_empty(), (missing.head(10), missing.group_by("width_s").len())
    assert_frame_equal(
        stored_windows(lane.dsn), one_pass(feed, EventTimeParams()), check_exact=False, rel_tol=1e-9
    )


async def test_kill_9_at_random_points_then_restart(lane: Lane) -> None:
    feed, pieces = _feed(11)
    await produce(lane.bootstrap, lane.topic, pieces)
    rng = random.Random(5)
    small = ("--poll-max-records", "40")  # many commits, so kills land between and inside them
    killed, seen = 0, 0
    for i in range(3):
        proc = spawn(process_cmd(lane, 30.0, *small))
        # kill at a random point of the i-th quarter of the stream, however fast the member is:
        # wait for its committed offsets to pass a random target, then a random few ms more
        quarter = len(pieces) // 4
        target = max(seen + 1, rng.randint(i * quarter + 1, (i + 1) * quarter))
        seen = _wait_for_progress(lane, target - 1)
        time.sleep(rng.uniform(0.0, 0.05))  # noqa: ASYNC251 - the test itself waits
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no drain, no flush
            killed += 1
        proc.communicate(timeout=30)
    stored = scalar(lane.dsn, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets")
    assert killed >= 2
    assert 0 < stored < len(pieces)  # the kills interrupted the work
    final = spawn(process_cmd(lane, 3.0, *small))
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-3000:]
    _assert_exact(lane, feed, len(pieces))


def _wait_for_progress(lane: Lane, seen: int, timeout_s: float = 60.0) -> int:
    """Wait until the stored offsets move past ``seen``; returns them."""
    deadline = time.monotonic() + timeout_s
    sql = "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
    while time.monotonic() < deadline:
        now = scalar(lane.dsn, sql)
        if now > seen:
            return now
        time.sleep(0.01)
    msg = f"no progress past offset sum {seen} in {timeout_s} s"
    raise AssertionError(msg)


async def test_three_members_one_killed_mid_stream(lane: Lane) -> None:
    feed, pieces = _feed(12)
    await produce(lane.bootstrap, lane.topic, pieces)
    small = ("--poll-max-records", "100", "--log-level", "INFO")
    members = [spawn(process_cmd(lane, 12.0, *small)) for _ in range(3)]
    _wait_for_progress(lane, 0)
    time.sleep(1.0)  # noqa: ASYNC251 - the test itself waits
    assert members[0].poll() is None
    members[0].kill()
    members[0].communicate(timeout=30)
    logs = ""
    for m in members[1:]:
        _, err = m.communicate(timeout=120)
        assert m.returncode == 0, err.decode()[-3000:]
        logs += "\n".join(x for x in err.decode().splitlines() if "processors.runner" in x) + "\n"
    _assert_exact(lane, feed, len(pieces), logs)


async def test_sigterm_drains_commits_and_exits_cleanly(lane: Lane) -> None:
    feed, pieces = _feed(13)
    await produce(lane.bootstrap, lane.topic, pieces)
    small = ("--poll-max-records", "40", "--log-level", "INFO")
    proc = spawn(process_cmd(lane, 30.0, *small))
    _wait_for_progress(lane, 0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "event=drained" in err.decode()
    stored = scalar(lane.dsn, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets")
    assert 0 < stored < len(pieces)
    final = spawn(process_cmd(lane, 3.0))
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-3000:]
    _assert_exact(lane, feed, len(pieces))
