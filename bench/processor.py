"""Processor benchmark: readings/s from Kafka to committed rows in TimescaleDB, per process.

Setup (not timed): a throw-away database, a 6-partition topic, and energy-counter reading batches
(1-minute readings, ``PACK`` per record, devices interleaved in time order) produced to it.

- ours: one ``pilotstream process`` subprocess (deltas off) consumes the topic and commits
  readings, 15-min and hourly windows, rejections and offsets; it logs its busy span (first poll
  to last commit) when it exits idle; ``readings_per_s`` = readings / span; ``rss_mb`` = peak RSS;
  ``rss_mb_peak_by_quarter`` / ``rss_mb_median_by_quarter`` per quarter of the run: the full run
  spans six hours of event time, so from the second hour on the state is steady and
  ``rss_growth_mb_last_half`` (of the medians) should be ~0.
- peer: a Quix Streams application on the same topic and data (its own consumer group): it
  expands each batch into readings, stamps their event time and sums them per device in hourly
  tumbling windows, counting the closed windows (it writes nothing to the database, which
  favours it). Its span runs from the first to the last processed message.
- ``rss_mb_100k_devices`` (full run only): peak RSS of a processor with 100,000 devices seen, 10
  readings each (the per-device catalog and arrays; the buffers barely filled).
- ``rss_100k_devices_steady`` (full run only): 100,000 devices sending 1-minute readings for
  ``STEADY_HOURS`` of event time: from 2 h on the state holds each device's readings of the
  widest window plus the allowed lateness (120 per device), its steady size, so the second half
  of the run is steady (the partitions progress evenly): peak RSS, peak and median per quarter,
  and ``rss_growth_mb_last_half``, which should be ~0.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.summary import progress, summary

PACK = 20  # readings per Kafka record
EVENT_HOURS = 6  # event time the full run spans (1-minute readings per device)
STEADY_HOURS = 4  # event time of the 100,000-device memory run
HOUR_MS = 3_600_000
ROOT = Path(__file__).resolve().parents[1]


def _records(devices: int, per_device: int, pack: int) -> list[tuple[bytes, bytes]]:
    from pilotstream.codec import encode
    from pilotstream.contracts import ReadingBatch

    now = int(time.time() * 1000)
    t0 = (now // HOUR_MS - per_device // 60 - 2) * HOUR_MS
    rate = 0.01 * (1 + np.arange(devices) % 7)
    out = []
    for start in range(0, per_device, pack):  # one record per device and block of readings
        steps = np.arange(start + 1, min(per_device, start + pack) + 1)
        ts = (t0 + 60_000 * steps).tolist()
        n = len(ts)
        for d in range(devices):
            values = np.round(100.0 + rate[d] * steps, 6).tolist()
            dev = f"bench-{d:06d}"
            batch = ReadingBatch(
                tenant="paris-energy-1", city="paris", device_id=dev, gateway_id="bench",
                received_at_ms=now, metric=["energy.active.import"] * n, ts_ms=ts, value=values,
                unit=["kWh"] * n, kind=["counter"] * n, seq=[-1] * n,
            )  # fmt: skip
            out.append((dev.encode(), encode(batch)))
    return out


async def _setup_topic(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
        max_batch_size=1 << 20, compression_type="lz4",
    )  # fmt: skip
    await producer.start()
    try:
        futs = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def _drop_topic(bootstrap: str, topic: str) -> None:
    """Delete the bench's topic; a failure is reported, not raised (it runs in ``finally``)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.delete_topics([topic])
    except Exception as exc:  # must not hide the run's own error
        progress(f"could not delete topic {topic}: {exc!r}")
    finally:
        await admin.close()


def _run_ours(topic: str, database: str, bootstrap: str) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "pilotstream.cli", "process", "--readings-topic", topic,
        "--group-id", f"bench-{topic}", "--pg-database", database, "--kafka-bootstrap", bootstrap,
        "--publish-deltas", "false", "--exit-when-idle", "2",
        "--log-level", "INFO",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    samples = _watch_rss(proc)
    _, err = proc.communicate(timeout=900)
    text = err.decode()
    m = re.search(r"event=exit_when_idle .*readings=(\d+) busy_span_s=([\d.]+)", text)
    if proc.returncode != 0 or m is None:
        msg = f"processor failed (exit {proc.returncode}): {text[-2000:]}"
        raise RuntimeError(msg)
    readings, span = int(m.group(1)), float(m.group(2))
    return {
        "readings": readings,
        "seconds": round(span, 3),
        "readings_per_s": round(readings / span) if span else 0,
        "rss_mb": round(max(rss for _, rss in samples), 1),
        **_rss_course(samples),
    }


def _watch_rss(proc: subprocess.Popen[bytes]) -> list[tuple[float, float]]:
    """(seconds since start, RSS MiB) every 0.1 s while ``proc`` runs (filled by a thread)."""
    samples: list[tuple[float, float]] = [(0.0, 0.0)]
    t0 = time.monotonic()

    def watch() -> None:
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                samples.append((time.monotonic() - t0, p.memory_info().rss / 2**20))
            except psutil.Error:
                return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    return samples


def _rss_course(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Peak and median RSS per quarter of the run, and the medians' growth over the last half.

    The runs span EVENT_HOURS (STEADY_HOURS for 100,000 devices) of event time, so the state
    (widest window + lateness, 2 h) is steady in the last half: its memory should be flat there. Peaks swing by a poll's
    transient columns (a step closes a poll's devices with all their buffered readings), medians
    show the trend.
    """
    end = samples[-1][0]
    quarters = [
        [rss for t, rss in samples if q * end / 4 < t <= (q + 1) * end / 4] or [0.0]
        for q in range(4)
    ]
    medians = [float(np.median(q)) for q in quarters]
    return {
        "rss_mb_peak_by_quarter": [round(max(q), 1) for q in quarters],
        "rss_mb_median_by_quarter": [round(m, 1) for m in medians],
        "rss_growth_mb_last_half": round(medians[3] - medians[2], 1),
    }


def _run_quix(topic: str, bootstrap: str, readings: int) -> dict[str, Any]:
    import logging

    from quixstreams import Application

    seen = {"readings": 0, "windows": 0, "first": 0.0, "last": 0.0}

    def expand(batch: dict[str, Any]) -> list[dict[str, Any]]:
        if not seen["first"]:
            seen["first"] = time.perf_counter()
        return [
            {"ts_ms": t, "value": v} for t, v in zip(batch["ts_ms"], batch["value"], strict=True)
        ]

    def count_reading(_: Any) -> None:
        seen["readings"] += 1
        seen["last"] = time.perf_counter()

    def count_window(_: Any) -> None:
        seen["windows"] += 1

    with tempfile.TemporaryDirectory() as state:
        app = Application(
            broker_address=bootstrap, consumer_group=f"bench-quix-{topic}",
            auto_offset_reset="earliest", state_dir=state, loglevel=logging.WARNING,
            use_changelog_topics=False,
        )  # fmt: skip
        sdf = app.dataframe(app.topic(topic, value_deserializer="json"))
        sdf = sdf.apply(expand, expand=True)
        sdf = sdf.set_timestamp(lambda value, key, ts, headers: value["ts_ms"])
        sdf = sdf.update(count_reading)
        sdf = sdf.apply(lambda r: r["value"])
        sdf = sdf.tumbling_window(timedelta(hours=1)).sum().final()
        sdf = sdf.update(count_window)
        app.run(timeout=3.0)
    span = seen["last"] - seen["first"]
    return {
        "readings": seen["readings"],
        "hourly_windows_counted": seen["windows"],
        "seconds": round(span, 3),
        "readings_per_s": round(seen["readings"] / span) if span else 0,
        "complete": seen["readings"] == readings,
    }


def run(quick: bool) -> dict[str, Any]:
    """Run the benchmark; ``quick`` is the CI smoke size."""
    from psycopg.conninfo import conninfo_to_dict

    from pilotstream.settings import BaseSettings
    from storage.testing import create_temp_database, drop_database

    settings = BaseSettings.load()
    devices, per_device = (1_000, 120) if quick else (10_000, EVENT_HOURS * 60)
    params = {"devices": devices, "readings_per_device": per_device, "pack": PACK}
    progress(f"building {devices * per_device:,} readings in records of {PACK}")
    records = _records(devices, per_device, PACK)
    topic = f"bench.processor.{secrets.token_hex(4)}"
    dsn = create_temp_database(settings)
    database = str(conninfo_to_dict(dsn)["dbname"])
    try:
        progress(f"producing {len(records):,} records to {topic}")
        asyncio.run(_setup_topic(settings.kafka_bootstrap, topic, records))
        del records
        progress("ours: pilotstream process")
        ours = _run_ours(topic, database, settings.kafka_bootstrap)
        progress(f"ours: {ours}")
        progress("peer: Quix Streams hourly tumbling window per device")
        theirs = _run_quix(topic, settings.kafka_bootstrap, devices * per_device)
        progress(f"peer: {theirs}")
    finally:  # a failed run leaves neither its topic nor its database behind
        asyncio.run(_drop_topic(settings.kafka_bootstrap, topic))
        drop_database(settings, dsn)
    if not quick:
        ours["rss_mb_100k_devices"] = _rss_100k(settings, 10, 10)["rss_mb"]
        steady = _rss_100k(settings, STEADY_HOURS * 60, PACK)
        ours["rss_100k_devices_steady"] = {
            k: steady[k]
            for k in (
                "readings",
                "readings_per_s",
                "rss_mb",
                "rss_mb_peak_by_quarter",
                "rss_mb_median_by_quarter",
                "rss_growth_mb_last_half",
            )
        }
    return summary(
        "processor", params, ours, peer_name="quixstreams", peer_results=theirs,
        ratio_key="readings_per_s",
    )  # fmt: skip


def _rss_100k(settings: Any, per_device: int, pack: int) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    from storage.testing import create_temp_database, drop_database

    progress(f"memory: 100,000 devices, {per_device} one-minute readings each (own database)")
    records = _records(100_000, per_device, pack)
    topic = f"bench.processor.mem.{secrets.token_hex(4)}"
    dsn = create_temp_database(settings)
    try:
        asyncio.run(_setup_topic(settings.kafka_bootstrap, topic, records))
        del records
        database = str(conninfo_to_dict(dsn)["dbname"])
        result = _run_ours(topic, database, settings.kafka_bootstrap)
    finally:
        asyncio.run(_drop_topic(settings.kafka_bootstrap, topic))
        drop_database(settings, dsn)
    progress(f"memory: {result}")
    return result
