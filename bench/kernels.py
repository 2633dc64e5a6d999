"""Kernels alone: readings/s through the full kernel chain with 10,000 devices.

Chain per poll: ``decode_batches`` (ReadingBatch values -> columns) -> ``step`` (dedup, counter
consumption, quality flags, 15-min and hourly windows, watermarks, restatements) ->
``predict_windows`` (time-of-week baselines) -> ``emission_deltas`` (factors, deltas, kgCO2e).
Records carry 8 readings of one device (two hours of 15-minute energy registers); a poll holds
one record of every device, in time order (10,000 records), or the processor's
``poll_max_records`` when that is larger (several records per device). The processor's default
poll has been 5,000 records since 2026-11-29 (for its memory with 100,000 devices), so this
figure is for polls twice that size. Target: >= 2,000,000 readings/s.
With a default above 10,000 (several records per device and poll), ``half_poll`` runs the same
chain on polls of 10,000 records: the state's buffer (the readings still inside the widest window
and the lateness) is re-read at every poll, so smaller polls cost more per reading.

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


def _polls(
    devices: int, polls: int, per_record: int, records_per_device: int = 1, seed: int = 7
) -> list[list[ReadingBatch]]:
    """``polls`` polls of ``records_per_device`` records per device, ``per_record`` readings each;
    a poll holds each device's next records, devices interleaved in time order."""
    per_poll = per_record * records_per_device
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.0, 2.0, size=(devices, polls * per_poll))
    registers = np.cumsum(steps, axis=1) + rng.uniform(0, 5e4, size=(devices, 1))
    ids = [f"dev-{i:05d}" for i in range(devices)]
    out = []
    for p in range(polls):
        batches: list[ReadingBatch] = []
        for r in range(records_per_device):
            first = p * per_poll + r * per_record
            cols = slice(first, first + per_record)
            ts = [T0 + (first + k) * QUARTER_MS for k in range(per_record)]
            batches.extend(
                ReadingBatch(
                    tenant="paris-energy-1",
                    city="paris",
                    device_id=ids[d],
                    gateway_id="g",
                    received_at_ms=ts[-1],
                    metric=[METRIC] * per_record,
                    ts_ms=ts,
                    value=registers[d, cols].tolist(),
                    unit=["kWh"] * per_record,
                    kind=["counter"] * per_record,
                    seq=list(range(first, first + per_record)),
                )
                for d in range(devices)
            )
        out.append(batches)
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
    from processors.settings import ProcessorSettings

    devices, per_record = 10_000, 8  # two hours of 15-minute registers per record
    poll_records = ProcessorSettings.load(env={}).poll_max_records  # the processor's default
    per_device = max(1, poll_records // devices)  # records per device and poll (at least one)
    polls = (
        2 if quick else 6
    )  # timed polls of the full size (the same readings as 2x as many halves)
    progress(f"building {polls} polls of {devices * per_device:,} records x {per_record} readings")
    full = _polls(devices, polls + 1, per_record, per_device)
    half = _polls(devices, 2 * polls + 1, per_record) if per_device > 1 else None
    small_devices, small_polls = 2_000, 10 if quick else 30
    small = _polls(small_devices, small_polls + 12, 1)  # 12 warm-up polls fill the buffer
    reg = load_registry()
    pilot = reg.pilots["paris-energy-1"]
    rules = pilot_rules(pilot, reg.cities[pilot.city])
    factors = load_factors()
    params = EventTimeParams()
    ids = [b.device_id for b in full[0][:devices]]  # the small polls' devices are the first 2,000
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

    def timed(data: list[list[ReadingBatch]]) -> dict[str, Any]:
        """The chain over ``data`` (a warm-up poll first: it has no predecessors yet)."""
        state, _ = chain(data[0], EventTimeState(intervals=intervals))
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
        n = len(data) - 1
        progress(
            f"polls of {len(data[1]):,} records: {readings:,} readings, {windows:,} window "
            f"results in {seconds:.2f} s ({readings / seconds:,.0f}/s); per poll: "
            + ", ".join(f"{k} {v / n * 1000:.1f} ms" for k, v in stages.items())
        )
        return {
            "readings_per_s": round(readings / seconds),
            "readings_per_cpu_s": round(readings / cpu_seconds) if cpu_seconds else None,
            "readings": readings,
            "window_results": windows,
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3),
            "stage_ms_per_poll": {k: round(v / n * 1000, 2) for k, v in stages.items()},
        }

    results = timed(full)
    half_poll = None
    if half is not None:
        half_poll = {"records_per_poll": devices} | timed(half)
    del full, half

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
            "records_per_poll": devices * per_device,
            "readings_per_record": per_record,
            "readings_per_device_per_poll": per_record * per_device,
            "widths_s": list(params.widths_s),
            "quick": quick,
        },
        {
            **results,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "rss_mb": rss_mb(),
            "half_poll": half_poll,
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
