"""The demo as a reusable run: stack up, fresh run database and topics, gateway and processors as
child processes, the demo scenario through MQTT with faults on, drain, then the figures.

:func:`run_demo` returns a :class:`DemoResult`; ``pilotstream demo`` renders it and the end-to-end
tests assert on it. The scenario keeps its fixed anchor (not "now"), so re-running gives the same
figures: every run starts from an empty database and empty topics.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import psycopg

from deploy.local.pipeline import LocalPipeline, PipelineRun, lag, prepare
from pilotstream.settings import BaseSettings

if TYPE_CHECKING:
    from simulators.scenario import Scenario

Say = Callable[[str], None]
WIDTH_S = 3600  # the window width the figures are summed over (15-min results hold the same data)
# The demo scenario has a 28-day baseline period (CalTRACK asks a year): the processors fit on those
# 28 days and may use the temperature model on them; they exit once idle, closing open windows.
DEMO_PROCESSOR_FLAGS = [
    "--exit-when-idle-s", "6",
    "--idle-close-s", "60",
    "--baseline-days", "28",
    "--baseline-hourly-min-days", "28",
]  # fmt: skip


@dataclass(frozen=True)
class DemoResult:
    """Figures of one demo run."""

    run: PipelineRun
    out_dir: Path  # simulator output: messages, readings, truth, fault log
    published: int  # MQTT messages the simulator published
    refused_by_broker: int  # wrong-tenant publishes the broker ACL dropped
    readings_sent: int  # readings inside the published messages (as the simulator logged them)
    publish_s: float  # wall time of publishing
    drain_s: float  # from the last publish until lag zero and every processor exited
    pilots: pl.DataFrame  # per city and pilot: pipeline vs truth avoided kWh and kgCO2e
    per_metric: pl.DataFrame  # per pilot and metric: pipeline vs truth
    rejections: pl.DataFrame  # reason, count (gateway dead letters and processor rejections)
    faults: pl.DataFrame  # kind, count injected
    quality: dict[str, int]  # stored readings, duplicates dropped, restated windows...
    latency_ms: dict[str, float | None]  # gateway receive -> row stored, percentiles


def register_scenario(dsn: str, scenario: Scenario) -> int:
    """Record each pilot's intervention start of a simulator scenario; returns rows written."""
    tenants = sorted({g.tenant for g in scenario.groups})
    start_ms = scenario.intervention_ms
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM interventions WHERE kind = 'start' AND device_id IS NULL")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO interventions (tenant, kind, starts_at, detail) "
                "VALUES (%s, 'start', to_timestamp(%s / 1000.0), 'simulated scenario')",
                [(t, start_ms) for t in tenants],
            )
    return len(tenants)


def run_demo(
    settings: BaseSettings,
    say: Say,
    *,
    run: PipelineRun | None = None,
    scenario: str = "demo",
    processors: int = 2,
    out_dir: Path | None = None,
    show_progress: bool = True,
) -> DemoResult:
    """Run the scenario through the whole pipeline and collect the figures."""
    from simulators.scenario import load_scenario

    run = run or PipelineRun.named("demo", metrics_port=19301)
    out_dir = out_dir or Path(settings.state_dir).resolve() / "runs" / run.name
    prepare(settings, run, say)
    scn = load_scenario(scenario)
    n = register_scenario(run.dsn(settings), scn)
    say(
        f"interventions: {n} pilots start on {time.strftime('%Y-%m-%d', time.gmtime(scn.intervention_ms / 1000))}"
    )
    command = ["simulate", scenario, "--to", "mqtt", "--out", str(out_dir)]
    publish_s, drain_s, sim_output = feed_pipeline(
        settings,
        run,
        command,
        out_dir / "logs",
        say,
        processors=processors,
        show_progress=show_progress,
    )
    return _collect(settings, run, scenario, out_dir, sim_output, publish_s, drain_s)


def feed_pipeline(
    settings: BaseSettings,
    run: PipelineRun,
    command: list[str],
    log_dir: Path,
    say: Say,
    *,
    processors: int = 2,
    show_progress: bool = True,
) -> tuple[float, float, str]:
    """Start the run's gateway, processors and dead-letter sink, run a ``pilotstream`` publishing
    command (``simulate`` or ``replay``), and drain; returns (publish s, drain s, its output)."""
    with LocalPipeline(settings, run, log_dir) as pipe:
        pipe.start_gateway()
        for i in range(processors):
            pipe.start_processor(i, extra=DEMO_PROCESSOR_FLAGS)
        pipe.start_dead_letter_sink()
        say(f"gateway and {processors} processors started (logs in {log_dir})")
        t0 = time.monotonic()
        sim = subprocess.run(
            [sys.executable, "-m", "pilotstream.cli", *command],
            stdout=None if show_progress else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        publish_s = time.monotonic() - t0
        if sim.returncode != 0:
            msg = f"`pilotstream {' '.join(command)}` failed (exit {sim.returncode}):\n{sim.stderr[-3000:]}"
            raise RuntimeError(msg)
        t1 = time.monotonic()
        _drain(settings, pipe, say)
        return publish_s, time.monotonic() - t1, sim.stderr + (sim.stdout or "")
