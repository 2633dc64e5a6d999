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

from deploy.local.pipeline import LocalPipeline, PipelineRun, lag, prepare, wait_until
from pilotstream.settings import BaseSettings

if TYPE_CHECKING:
    from simulators.scenario import Scenario

Say = Callable[[str], None]
WIDTH_S = 3600  # the window width the figures are summed over (15-min results hold the same data)
# The demo scenario has a 28-day baseline period (CalTRACK asks a year): the processors fit on those
# 28 days and may use the temperature model on them; they exit once idle, closing open windows.
# Lateness: the scenario delays some messages by 1-6 hours (a gateway buffering its uplinks);
# within 5 h they restate their windows, beyond it they are refused as too_late.
DEMO_LATENESS_S = 5 * 3600
DEMO_PROCESSOR_FLAGS = [
    "--allowed-lateness-s", str(DEMO_LATENESS_S),
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
        # publish only once the gateway's subscription is confirmed: a message sent before it
        # has no subscriber and the broker drops it
        if not wait_until(lambda: pipe.gateway_metric("gateway_mqtt_up") >= 1, timeout_s=60):
            msg = f"the gateway did not subscribe within 60 s; see {log_dir}"
            raise RuntimeError(msg)
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


def _drain(settings: BaseSettings, pipe: LocalPipeline, say: Say, timeout_s: float = 600) -> None:
    """Wait for lag zero and for every processor to exit (they close open windows when idle)."""
    deadline = time.monotonic() + timeout_s
    procs = [c for c in pipe.children if c.name.startswith("processor")]
    others = [c for c in pipe.children if not c.name.startswith("processor")]  # the gateway
    last = ""
    while time.monotonic() < deadline:
        readings_lag, dead_lag = asyncio.run(lag(settings, pipe.run))
        running = sum(c.proc.poll() is None for c in procs)
        line = f"draining: processor lag {readings_lag}, dead-letter lag {dead_lag}, processors running {running}"
        if line != last:
            say(line)
            last = line
        # a processor may exit 0 once idle; the gateway must run until the pipeline stops it
        failed = [c for c in procs if c.proc.poll() not in (None, 0)]
        failed += [c for c in others if c.proc.poll() is not None]
        if failed:
            msg = f"{failed[0].name} exited with {failed[0].proc.returncode}; see {failed[0].log}"
            raise RuntimeError(msg)
        if readings_lag == 0 and dead_lag == 0 and running == 0:
            return
        time.sleep(1.0)
    msg = f"the pipeline did not drain in {timeout_s:.0f} s"
    raise RuntimeError(msg)


def _collect(
    settings: BaseSettings,
    run: PipelineRun,
    scenario: str,
    out_dir: Path,
    sim_output: str,
    publish_s: float,
    drain_s: float,
) -> DemoResult:
    import re

    from simulators.scenario import load_scenario

    scn = load_scenario(scenario)
    devices = pl.read_parquet(out_dir / "readings.parquet", columns=["device_id"])[
        "device_id"
    ].unique()
    truth = _reporting_period(pl.read_parquet(out_dir / "truth.parquet"), scn)
    faults = pl.read_parquet(out_dir / "faults.parquet")
    manifest = (out_dir / "manifest.json").read_text()
    m = re.search(r"MQTT: (\d+) published, (\d+) acknowledged, (\d+) refused", sim_output)
    published, refused = (int(m.group(1)), int(m.group(3))) if m else (0, 0)
    import json

    readings_sent = int(json.loads(manifest).get("readings", 0))
    with psycopg.connect(run.dsn(settings)) as conn:
        # only the scenario's devices: anyone else publishing on this broker meanwhile is not counted
        windows = _frame(
            conn,
            "SELECT w.tenant, p.city, w.metric, sum(w.actual) AS actual, sum(w.baseline) AS baseline, "
            "sum(w.delta) AS avoided, sum(w.avoided_co2e_kg) AS avoided_co2e_kg, "
            "count(*) FILTER (WHERE w.revision > 1) AS restated "
            "FROM window_results w JOIN pilots p ON p.tenant = w.tenant "
            "WHERE w.width_s = %s AND w.bucket_start >= to_timestamp(%s / 1000.0) "
            "AND w.device_id = ANY(%s) GROUP BY 1, 2, 3",
            (WIDTH_S, scn.intervention_ms, devices.to_list()),
        )
        rejections = _frame(
            conn, "SELECT reason, count(*) AS count FROM rejections GROUP BY 1 ORDER BY 2 DESC", ()
        )
        stored = _scalar(
            conn, "SELECT count(*) FROM readings WHERE device_id = ANY(%s)", devices.to_list()
        )
        restated = _scalar(conn, "SELECT count(*) FROM window_results WHERE revision > 1")
        lat = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms), max(ms) FROM "
            "(SELECT extract(epoch FROM stored_at - received_at) * 1000 AS ms FROM readings) x"
        ).fetchone()
    pilots = _compare(truth, windows, ["tenant", "city"])
    p50, p95, p99 = (lat[0] or [None, None, None]) if lat else (None, None, None)
    return DemoResult(
        run=run,
        out_dir=out_dir,
        published=published,
        refused_by_broker=refused,
        readings_sent=readings_sent,
        publish_s=publish_s,
        drain_s=drain_s,
        pilots=pilots,
        rejections=rejections,
        faults=faults.group_by("kind").len("count").sort("kind"),
        quality={"readings_stored": int(stored), "windows_restated": int(restated)},
        latency_ms={"p50": p50, "p95": p95, "p99": p99, "max": lat[1] if lat else None},
    )


def _scalar(conn: psycopg.Connection[tuple[object, ...]], query: str, *params: object) -> int:
    row = conn.execute(query, params or None).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def _frame(
    conn: psycopg.Connection[tuple[object, ...]], query: str, params: tuple[object, ...]
) -> pl.DataFrame:
    cur = conn.execute(query, params)
    names = [d.name for d in cur.description or []]
    return pl.DataFrame(cur.fetchall(), schema=names, orient="row")


def _reporting_period(truth: pl.DataFrame, scn: Scenario) -> pl.DataFrame:
    """Truth rows of local days from the intervention's local date on (the pipeline counts avoided
    emissions only after the intervention; the truth counts mode-shift km on every day)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    start = datetime.fromtimestamp(scn.intervention_ms / 1000, tz=UTC)
    first_day = {
        c.id: start.astimezone(ZoneInfo(c.tz)).date() for c in scn.registry.cities.values()
    }
    return truth.filter(
        pl.col("date") >= pl.col("city").replace_strict(first_day, return_dtype=pl.Date)
    )


def _compare(truth: pl.DataFrame, windows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Pipeline vs truth sums of avoided amount (kWh for energy) and kgCO2e, with relative diffs."""
    energy = pl.col("unit") == "kWh"
    t = truth.group_by(keys).agg(
        truth_kwh=pl.when(energy).then(pl.col("avoided")).otherwise(0.0).sum(),
        truth_kg=pl.col("avoided_co2e_kg").sum(),
    )
    w = windows.group_by(keys).agg(
        pipeline_kwh=pl.when(pl.col("metric").str.starts_with("energy."))
        .then(pl.col("avoided"))
        .otherwise(0.0)
        .sum(),
        pipeline_kg=pl.col("avoided_co2e_kg").sum(),
        restated=pl.col("restated").sum(),
    )
    return (
        t.join(w, on=keys, how="full", coalesce=True)
        .fill_null(0.0)
        .with_columns(
            diff_kg_pct=(pl.col("pipeline_kg") - pl.col("truth_kg"))
            / pl.col("truth_kg").abs()
            * 100,
            diff_kwh_pct=pl.when(pl.col("truth_kwh") != 0).then(
                (pl.col("pipeline_kwh") - pl.col("truth_kwh")) / pl.col("truth_kwh").abs() * 100
            ),
        )
        .sort(keys)
    )
