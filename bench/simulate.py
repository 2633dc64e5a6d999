"""Simulator benchmark: generation into memory and into Parquet (city-scale), MQTT QoS 1 publishing.

``python -m bench simulate [--quick]``; results: ``readings_per_s`` (generation into memory, all of
city-scale: a year of 15-minute data for about 4,300 devices; --quick: its first 14 days),
``parquet_readings_per_s`` (generation + polars frames + one Parquet file), ``mqtt_msgs_per_s``
(demo messages published at QoS 1 to the local Mosquitto as pilot users, all acknowledged).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from bench.summary import progress, rss_mb, summary
from simulators.generate import block_frame, count_readings, generate_chunks
from simulators.publishers.mqtt import MqttPublisher
from simulators.run import simulate
from simulators.scenario import Scenario, first_days, load_scenario


def _memory(scn: Scenario) -> dict[str, Any]:
    t0 = time.perf_counter()
    n = count_readings(generate_chunks(scn))
    dt = time.perf_counter() - t0
    return {"readings": n, "seconds": round(dt, 2), "readings_per_s": round(n / dt)}


def _parquet(scn: Scenario) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        path = Path(tmp) / "readings.parquet"
        t0 = time.perf_counter()
        n = 0
        writer: pq.ParquetWriter | None = None
        for chunk in generate_chunks(scn):
            for block in chunk.blocks:
                table = block_frame(chunk, block).to_arrow()
                writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table)
                n += table.num_rows
        if writer is not None:
            writer.close()
        dt = time.perf_counter() - t0
        size = path.stat().st_size
    return {
        "readings": n,
        "seconds": round(dt, 2),
        "readings_per_s": round(n / dt),
        "mb": round(size / 2**20, 1),
    }


def _mqtt(n_msgs: int) -> dict[str, Any]:
    from pilotstream.settings import BaseSettings

    run = simulate(load_scenario("demo"))
    msgs = run.messages.filter(pl.col("fault") == "").head(n_msgs)
    settings = BaseSettings.load()
    t0 = time.perf_counter()
    with MqttPublisher(settings=settings, client_prefix="bench-sim") as pub:
        for user, topic, payload, msg_id in msgs.select(
            "user", "topic", "payload", "msg_id"
        ).iter_rows():
            pub.publish(user, topic, payload.encode(), msg_id)
    dt = time.perf_counter() - t0
    return {
        "messages": msgs.height,
        "acked": pub.stats.acked,
        "seconds": round(dt, 2),
        "msgs_per_s": round(msgs.height / dt),
        "mean_bytes": round(float(msgs["payload"].str.len_bytes().to_numpy().mean()))
        if msgs.height
        else 0,
    }


def run(quick: bool) -> dict[str, Any]:
    """Run the three measurements and build the summary."""
    scn = load_scenario("city-scale")
    mem_scn = first_days(scn, 14) if quick else scn
    pq_scn = first_days(scn, 3 if quick else 30)
    progress(f"generation into memory: {mem_scn.device_count} devices x {mem_scn.days} days")
    mem = _memory(mem_scn)
    progress(f"  {mem['readings']} readings in {mem['seconds']} s")
    progress(f"generation into Parquet: {pq_scn.days} days")
    par = _parquet(pq_scn)
    progress(f"  {par['readings']} readings in {par['seconds']} s ({par['mb']} MB)")
    n_msgs = 5_000 if quick else 40_000
    progress(f"MQTT QoS 1: {n_msgs} demo messages")
    mq = _mqtt(n_msgs)
    progress(f"  {mq['messages']} messages in {mq['seconds']} s")
    params = {
        "scenario": scn.name,
        "devices": scn.device_count,
        "memory_days": mem_scn.days,
        "parquet_days": pq_scn.days,
        "mqtt_messages": n_msgs,
        "quick": quick,
    }
    results = {
        "readings_per_s": mem["readings_per_s"],
        "readings": mem["readings"],
        "parquet_readings_per_s": par["readings_per_s"],
        "parquet_mb": par["mb"],
        "mqtt_msgs_per_s": mq["msgs_per_s"],
        "mqtt_acked": mq["acked"],
        "mqtt_mean_payload_bytes": mq["mean_bytes"],
        "rss_mb": rss_mb(),
    }
    return summary("simulate", params, results)
