"""The local stack, on the real services: auth and ACL, Kafka with acks=all, hypertables, idempotent
``up``, and ``status`` failing when a service is stopped."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from deploy.local import smoke, stack
from deploy.local.base import Layout
from deploy.local.mosquitto import Mosquitto
from deploy.local.settings import StackSettings
from pilotstream.contracts import Reading
from pilotstream.settings import BaseSettings

pytestmark = pytest.mark.integration


def test_pilot_publishes_and_gateway_receives_with_auth(stack: BaseSettings) -> None:
    topic = f"pilots/paris-energy-1/json/itest-{uuid.uuid4().hex[:6]}"
    res = smoke.mqtt_roundtrip(
        stack, publisher="paris-energy-1", topic=topic, payload=b'{"readings":[]}'
    )
    assert res.delivered == [b'{"readings":[]}']


def test_pilot_cannot_publish_under_another_pilots_prefix(stack: BaseSettings) -> None:
    topic = f"pilots/amsterdam-energy-1/json/itest-{uuid.uuid4().hex[:6]}"
    res = smoke.mqtt_roundtrip(
        stack, publisher="paris-energy-1", topic=topic, payload=b"intruder", wait_s=1.5
    )
    assert res.delivered == []


def test_wrong_password_is_refused(stack: BaseSettings) -> None:
    bad = dataclasses.replace(stack, mqtt_pilot_password="wrong")
    topic = "pilots/paris-energy-1/json/x"
    with pytest.raises(RuntimeError, match=r"(?i)not authori[sz]ed"):
        smoke.mqtt_roundtrip(bad, publisher="paris-energy-1", topic=topic, payload=b"x", wait_s=1)


def test_kafka_batch_roundtrip_with_acks_all_and_idempotence(stack: BaseSettings) -> None:
    reading = Reading(
        tenant="paris-energy-1", city="paris", device_id=f"itest-{uuid.uuid4().hex[:6]}",
        metric="energy.active.import", ts_ms=smoke.now_ms(), value=12.5, unit="kWh",
        kind="counter", seq=7, received_at_ms=smoke.now_ms(), gateway_id="itest",
    )  # fmt: skip
    assert smoke.kafka_roundtrip(stack, "pilotstream.deltas.v1", reading) == [reading]


def test_hypertable_insert_and_time_bucket(stack: BaseSettings) -> None:
    table = f"itest_ht_{uuid.uuid4().hex[:6]}"
    base = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    rows = [(base + 60 * i, 1.0) for i in range(30)]  # 30 one-minute readings = two 15-min buckets
    buckets = smoke.hypertable_roundtrip(stack, table, rows)
    assert [(int(n), float(s)) for _, n, s in buckets] == [(15, 15.0), (15, 15.0)]
    import psycopg

    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        n = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = %s",
            (table,),
        ).fetchone()
        conn.execute(f"DROP TABLE {table}")
    assert n == (1,)


def test_second_up_is_fast_and_changes_nothing(stack: BaseSettings) -> None:
    before = {r.name: r.pid for r in stack_status()}
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "pilotstream.cli", "stack", "up"],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("already running") == 3
    assert "created" not in out.stdout
    assert {r.name: r.pid for r in stack_status()} == before
    assert elapsed < 20


def stack_status() -> list[stack.ServiceStatus]:
    return stack.status(StackSettings.load())


def test_status_exits_non_zero_when_a_service_is_stopped(stack: BaseSettings) -> None:
    """A second Mosquitto on a free port (the shared one keeps serving other tests): status is 0
    while it runs and 3 once it is stopped."""
    # under the stack's own state dir: the broker drops to its own user, which cannot enter /tmp/pytest-*
    state = stack.state_dir.resolve() / f"itest-{uuid.uuid4().hex[:6]}"
    settings = StackSettings.load(overrides={"mqtt_port": 18839, "state_dir": str(state)})
    layout = Layout(settings.state_dir.resolve())
    layout.run.mkdir(parents=True)
    broker = Mosquitto(settings, layout)
    broker.prepare()
    broker.start()
    try:
        broker.wait_ready()
        env_cmd = [
            sys.executable,
            "-m",
            "pilotstream.cli",
            "stack",
            "status",
            "--mqtt-port",
            "18839",
            "--state-dir",
            str(state),
        ]
        up = subprocess.run(env_cmd, capture_output=True, text=True, check=False)
        assert up.returncode == 0, up.stdout
    finally:
        assert broker.stop()
    down = subprocess.run(env_cmd, capture_output=True, text=True, check=False)
    assert down.returncode == 3
    assert "mosquitto" in down.stdout
    assert "down" in down.stdout
    shutil.rmtree(state, ignore_errors=True)
