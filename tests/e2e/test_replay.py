"""Replays of the live demo's recording: the same window results at any speed, and only once.

The live run (``live`` fixture) publishes the scenario at the simulator's pace and records every
message it sent; ``pilotstream replay --speed max`` publishes that recording again, as fast as the
broker takes it, into a fresh pipeline. Nothing about timing may show in the results: polls cut
differently, baselines fitted at another moment, other processors ahead or behind.
"""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from deploy.local.demo import DemoResult, feed_pipeline, register_scenario
from deploy.local.pipeline import PipelineRun, prepare
from pilotstream.settings import BaseSettings
from simulators.scenario import load_scenario

pytestmark = pytest.mark.e2e

KEY = ["device_id", "metric", "width_s", "bucket_start"]
VALUES = ["actual", "baseline", "delta", "avoided_co2e_kg"]


def _say(msg: str) -> None:
    print(f"[e2e-replay] {msg}", flush=True)


def _replay(stack: BaseSettings, run: PipelineRun, live: DemoResult) -> None:
    command = ["replay", str(live.out_dir), "--to", "mqtt", "--speed", "max"]
    log_dir = stack.state_dir.resolve() / "runs" / run.name / "logs"
    feed_pipeline(stack, run, command, log_dir, _say, show_progress=False)


def _windows(dsn: str) -> pl.DataFrame:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(KEY + VALUES)}, baseline_model_id FROM window_results"
        ).fetchall()
    return pl.DataFrame(rows, schema=[*KEY, *VALUES, "baseline_model_id"], orient="row")


def _differences(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Windows present in one only, or whose values differ beyond float rounding."""
    both = a.join(b, on=KEY, how="full", coalesce=True, suffix="_b")
    close = pl.all_horizontal(
        ((pl.col(c) - pl.col(f"{c}_b")).abs() <= 1e-6 * (1 + pl.col(c).abs())).fill_null(False)
        for c in VALUES
    ) & (pl.col("baseline_model_id") == pl.col("baseline_model_id_b")).fill_null(False)
    return both.filter(~close)


@pytest.fixture(scope="module")
def replayed(stack: BaseSettings, live: DemoResult) -> PipelineRun:
    run = PipelineRun.named("e2e-replay", metrics_port=19341)
    prepare(stack, run, _say)
    register_scenario(run.dsn(stack), load_scenario("demo"))
    _replay(stack, run, live)
    return run


def test_replaying_the_recording_at_max_speed_gives_the_live_results(
    live: DemoResult, replayed: PipelineRun, stack: BaseSettings
) -> None:
    ours, theirs = _windows(live.run.dsn(stack)), _windows(replayed.dsn(stack))
    assert ours.height > 100_000
    diff = _differences(ours, theirs)
    assert diff.is_empty(), f"{diff.height} of {ours.height} windows differ:\n{diff.head(10)}"


def test_replaying_twice_changes_no_window_and_stores_no_reading_twice(
    live: DemoResult, replayed: PipelineRun, stack: BaseSettings
) -> None:
    dsn = replayed.dsn(stack)
    with psycopg.connect(dsn) as conn:
        readings = conn.execute("SELECT count(*) FROM readings").fetchone()
    before = _windows(dsn)
    _replay(stack, replayed, live)
    with psycopg.connect(dsn) as conn:
        again = conn.execute("SELECT count(*) FROM readings").fetchone()
        late = conn.execute("SELECT count(*) FROM rejections WHERE reason = 'too_late'").fetchone()
    assert again == readings
    assert late is not None
    assert late[0] > 100_000  # the second pass is refused as too late
    diff = _differences(before, _windows(dsn))
    assert diff.is_empty(), f"{diff.height} windows changed:\n{diff.head(10)}"
