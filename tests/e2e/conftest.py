"""One demo run on the real stack per session, shared by the end-to-end tests."""

from __future__ import annotations

import pytest

from deploy.local.demo import DemoResult, run_demo
from deploy.local.pipeline import PipelineRun
from pilotstream.settings import BaseSettings


def _say(msg: str) -> None:
    print(f"[e2e] {msg}", flush=True)


@pytest.fixture(scope="session")
def live(stack: BaseSettings) -> DemoResult:
    """The demo scenario through MQTT, gateway, Kafka, two processors and TimescaleDB, with faults."""
    run = PipelineRun.named("e2e-live", metrics_port=19331)
    out = stack.state_dir.resolve() / "runs" / run.name
    return run_demo(stack, _say, run=run, out_dir=out, show_progress=False)
