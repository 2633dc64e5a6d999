"""Kernels alone: readings/s through the full kernel chain with 10,000 devices.

Chain per poll: ``decode_batches`` (ReadingBatch values -> columns) -> ``step`` (dedup, counter
consumption, quality flags, 15-min and hourly windows, watermarks, restatements) ->
``predict_windows`` (time-of-week baselines) -> ``emission_deltas`` (factors, deltas, kgCO2e).
Each poll carries every device's next readings (15-minute energy registers), as a Kafka poll of
the readings topic would after decoding. Target: >= 2,000,000 readings/s.

Timed, per poll: the four calls above, the state carried from poll to poll as the processor
carries it. Not timed: building the synthetic polls (the ReadingBatch objects the processor gets
from msgspec-decoding the Kafka record values in ``processors/batch.py``; that decode is measured
by ``bench processor``), loading the registry, factors and models, and one warm-up poll (the
first poll has no predecessors). ``readings_per_cpu_s`` divides by the process's CPU time (all
threads), a steadier figure than wall time on a shared machine.

``small_poll`` times the same chain on small polls (one reading of each of 2,000 devices, as a
processor sees between bursts), where a step's fixed cost (per-state work, string lookups)
counts most: the median milliseconds per poll and per step.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import polars as pl

from bench.summary import progress, rss_mb, summary
from pilotstream.contracts import ReadingBatch

QUARTER_MS = 900_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
METRIC = "energy.active.import"


def _polls(devices: int, polls: int, per_poll: int, seed: int = 7) -> list[list[ReadingBatch]]:
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.0, 2.0, size=(devices, polls * per_poll))
    registers = np.cumsum(steps, axis=1) + rng.uniform(0, 5e4, size=(devices, 1))
    ids = [f"dev-{i:05d}" for i in range(devices)]
    out = []
    for p in range(polls):
        cols = slice(p * per_poll, (p + 1) * per_poll)
        ts = [T0 + (p * per_poll + k) * QUARTER_MS for k in range(per_poll)]
        out.append(
            [
                ReadingBatch(
                    tenant="paris-energy-1",
                    city="paris",
                    device_id=ids[d],
                    gateway_id="g",
                    received_at_ms=ts[-1],
                    metric=[METRIC] * per_poll,
                    ts_ms=ts,
                    value=registers[d, cols].tolist(),
                    unit=["kWh"] * per_poll,
                    kind=["counter"] * per_poll,
                    seq=list(range(per_poll)),
                )
                for d in range(devices)
            ]
        )
    return out


def run(quick: bool) -> dict[str, Any]:
    """Run the benchmark; ``quick`` uses fewer polls."""
    from pilotstream.registry import load_registry
    from processors.baselines import FittedModel, predict_windows
    from processors.factors import load_factors
    from processors.kernels import (
        EventTimeParams,
        EventTimeState,
        decode_batches,
        emission_deltas,
        pilot_rules,
        step,
    )

    devices = 10_000
    polls = 4 if quick else 12
    per_poll = 8  # readings per device per poll (two hours of 15-minute registers)
    progress(f"building {polls} polls of {devices} devices x {per_poll} readings")
    data = _polls(devices, polls + 1, per_poll)
    small_devices, small_polls = 2_000, 10 if quick else 30
    small = _polls(small_devices, small_polls + 12, 1)  # 12 warm-up polls fill the buffer
    reg = load_registry()
    pilot = reg.pilots["paris-energy-1"]
    rules = pilot_rules(pilot, reg.cities[pilot.city])
    factors = load_factors()
    params = EventTimeParams()
    ids = [b.device_id for b in data[0]]  # the small polls' devices are the first 2,000
    models = [
        FittedModel(
            method="tow",
            device_id=d,
            metric=METRIC,
            period_start_ms=0,
            period_end_ms=T0,
            params={"means": [0.5] * 168},
            metrics=None,
            sufficient=True,
        )
        for d in ids
    ]
    intervals = pl.DataFrame(
        {"device_id": ids, "metric": [METRIC] * devices, "interval_ms": [QUARTER_MS] * devices}
    )
    state = EventTimeState(intervals=intervals)

    stages = dict.fromkeys(("decode", "step", "predict", "emissions"), 0.0)

    def chain(batches: list[ReadingBatch], state: EventTimeState) -> tuple[EventTimeState, int]:
        t0 = time.perf_counter()
        frame = decode_batches(batches)
        t1 = time.perf_counter()
        now_ms = int(frame["ts_ms"].max()) + 1  # type: ignore[arg-type]
        result = step(state, frame, now_ms=now_ms, params=params)
        t2 = time.perf_counter()
        windows = predict_windows(models, result.windows, tz="Europe/Paris")
        t3 = time.perf_counter()
        deltas = emission_deltas(windows, rules=rules, factors=factors)
        for name, spent in zip(
            stages, (t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3), strict=True
        ):
            stages[name] += spent
        return result.state, deltas.height

    state, _ = chain(data[0], state)  # warm-up: first poll has no predecessors yet
    stages.update(dict.fromkeys(stages, 0.0))
    readings = windows = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for batches in data[1:]:
        state, n_windows = chain(batches, state)
        readings += sum(len(b) for b in batches)
        windows += n_windows
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started  # all threads of this process
    stages_timed = dict(stages)
    rate = readings / seconds
    progress(f"{readings} readings, {windows} window results in {seconds:.2f} s")
    progress("per poll: " + ", ".join(f"{k} {v / polls * 1000:.1f} ms" for k, v in stages.items()))

    small_state = EventTimeState(intervals=intervals.head(small_devices))
    poll_ms, step_ms = [], []
    for i, batches in enumerate(small):
        before = stages["step"]
        t0 = time.perf_counter()
        small_state, _ = chain(batches, small_state)
        if i >= len(small) - small_polls:
            poll_ms.append((time.perf_counter() - t0) * 1000)
            step_ms.append((stages["step"] - before) * 1000)
    progress(
        f"small polls ({small_devices} readings): {np.median(poll_ms):.1f} ms per poll, "
        f"step {np.median(step_ms):.1f} ms"
    )
    return summary(
        "kernels",
        {
            "devices": devices,
            "polls": polls,
            "readings_per_device_per_poll": per_poll,
            "widths_s": list(params.widths_s),
            "quick": quick,
        },
        {
            "readings_per_s": round(rate),
            "readings_per_cpu_s": round(readings / cpu_seconds) if cpu_seconds else None,
            "readings": readings,
            "window_results": windows,
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "rss_mb": rss_mb(),
            "stage_seconds": {k: round(v, 3) for k, v in stages_timed.items()},
            "small_poll": {
                "devices": small_devices,
                "readings_per_poll": small_devices,
                "polls": small_polls,
                "median_ms_per_poll": round(float(np.median(poll_ms)), 2),
                "median_step_ms": round(float(np.median(step_ms)), 2),
            },
            "target_readings_per_s": 2_000_000,
        },
    )
