"""``python -m bench pipeline``: the whole pipeline on this machine, every service running on it.

Publishers send SenML packs of 10 readings at fixed rates, stepping up, each step held long enough
to be stable; a step is *sustained* when the processors' lag (Kafka end offsets minus the offsets
stored with the results) is back under one second of traffic shortly after the step ends and
the publishers achieved at least 90 % of the rate; ``readings_per_s`` is the rate they achieved
in the highest sustained step (the step's nominal rate is ``sustained_step_msgs_per_s``).
End-to-end latency is measured at half the sustained maximum with probe readings whose event time
is their publish time: latency = when the row is first visible in TimescaleDB (polled every 25 ms)
minus the publish time. ``lost`` counts readings sent but neither stored nor rejected.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg

from bench.summary import progress, summary
from deploy.local.pipeline import LocalPipeline, PipelineRun, lag, prepare, wait_until
from pilotstream.settings import BaseSettings

PACK = 10  # readings per SenML pack
STEP_SPAN_S = 2_000  # event-time span reserved per step (each pack advances its device by 10 s)
TENANTS = ("paris-energy-1", "amsterdam-energy-1")  # one publisher process each
# the publishers' devices ({tenant[:2]}{n}) and the probe
OURS = (
    "(device_id ~ '^(pa|am)[0-9]+$' AND tenant IN ('paris-energy-1', 'amsterdam-energy-1')"
    " OR device_id = 'probe' AND tenant = 'tallinn-energy-1')"
)


def _publisher(
    tenant: str, rate: float, seconds: float, base_s: int, devices: int, out: Any
) -> None:
    """Publish SenML packs at ``rate`` msgs/s for ``seconds``; report (sent, elapsed)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    settings = BaseSettings.load()
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{tenant}", protocol=mqtt.MQTTv5
    )
    c.username_pw_set(tenant, settings.mqtt_pilot_password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    n = int(rate * seconds)
    # payloads built before the clock starts: the load generator stands in for remote sensors
    # and should take as little as possible of the CPU the pipeline shares with it
    messages = [_pack(tenant, i % devices, base_s + (i // devices) * PACK) for i in range(n)]
    t0 = time.monotonic()
    infos = []
    for i, (topic, payload) in enumerate(messages):
        infos.append(c.publish(topic, payload, qos=1))
        ahead = (i + 1) / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.monotonic() - t0
    c.disconnect()
    c.loop_stop()
    out.put((n, elapsed))


def _pack(tenant: str, dev: int, bt: int) -> tuple[str, bytes]:
    """Topic and SenML payload of one pack: PACK power readings of a device, 1 s apart."""
    pack: list[dict[str, Any]] = [
        {"bn": f"urn:dev:{tenant[:2]}{dev}:", "bt": bt, "bu": "kW", "n": "power.active",
         "v": 1.0 + dev % 7}
    ]  # fmt: skip
    pack += [{"n": "power.active", "t": j, "v": 1.0 + (dev + j) % 7} for j in range(1, PACK)]
    return f"pilots/{tenant}/senml/{tenant[:2]}{dev}", json.dumps(pack).encode()


def _probe(seconds: float, every_s: float, out: Any) -> None:
    """One reading every ``every_s`` with event time = publish time; report the publish times."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    settings = BaseSettings.load()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe", protocol=mqtt.MQTTv5)
    c.username_pw_set("tallinn-energy-1", settings.mqtt_pilot_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    sent = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        ts_ms = int(time.time() * 1000)
        body = {
            "readings": [{"metric": "power.active", "ts_ms": ts_ms, "value": 1.0, "unit": "kW"}]
        }
        c.publish("pilots/tallinn-energy-1/json/probe", json.dumps(body), qos=1).wait_for_publish(
            10
        )
        sent.append(ts_ms)
        time.sleep(every_s)
    c.disconnect()
    c.loop_stop()
    out.put(sent)


def _watch_probe(dsn: str, seconds: float) -> dict[int, tuple[float, int, int]]:
    """Poll the probe's rows: per event time, when it was first visible (epoch ms), and the
    row's ``received_at`` (gateway) and ``stored_at`` (start of the processor's transaction)."""
    seen: dict[int, tuple[float, int, int]] = {}
    last = 0
    t_end = time.monotonic() + seconds
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < t_end:
            rows = conn.execute(
                "SELECT (extract(epoch FROM ts) * 1000)::bigint,"
                " (extract(epoch FROM received_at) * 1000)::bigint,"
                " (extract(epoch FROM stored_at) * 1000)::bigint FROM readings "
                "WHERE device_id = 'probe' AND ts > to_timestamp(%s / 1000.0)",
                (last,),
            ).fetchall()
            now = time.time() * 1000
            for ts, received, stored in rows:
                seen.setdefault(int(ts), (now, int(received), int(stored)))
                last = max(last, int(ts))
            time.sleep(0.025)
    return seen


def _stages(seen: dict[int, tuple[float, int, int]], sent: list[int]) -> dict[str, Any]:
    """p50/p99 (ms) of the latency's parts: publish -> gateway receive -> processor transaction
    start -> visible (the commit; plus up to 25 ms of polling)."""
    rows = np.array([(t, *seen[t]) for t in sent if t in seen], dtype=np.float64)
    if rows.size == 0:
        return {}
    parts = {
        "to_gateway": rows[:, 2] - rows[:, 0],
        "gateway_to_transaction": rows[:, 3] - rows[:, 2],
        "transaction_to_visible": rows[:, 1] - rows[:, 3],
    }
    return {
        name: {f"p{q}_ms": round(float(np.percentile(v, q)), 1) for q in (50, 99)}
        for name, v in parts.items()
    }


def _step(
    pipe: LocalPipeline,
    settings: BaseSettings,
    rate: float,
    seconds: float,
    base_s: int,
    *,
    acked_before: int,
) -> dict[str, Any]:
    """Publish at ``rate`` msgs/s (split over the publishers) and report whether the lag recovered."""
    procs, q = _start_publishers(rate, seconds, base_s)
    cpu = _sample_cpu(pipe, seconds)
    results = _join_publishers(procs, q)
    sent = sum(n for n, _ in results)
    achieved = sent / max(e for _, e in results)
    # sustained: within 10 s of the step's end the gateway has acked every message (no MQTT
    # backlog) and the processors' lag is under one second of traffic
    recovered = wait_until(
        lambda: (
            pipe.gateway_metric("gateway_mqtt_acked_total") >= acked_before + sent
            and asyncio.run(lag(settings, pipe.run))[0] < max(rate, 1)
        ),
        timeout_s=10,
    )
    return {"rate_msgs_per_s": rate, "achieved_msgs_per_s": round(achieved), "sent": sent,
            "sustained": recovered and achieved >= 0.9 * rate, **cpu}  # fmt: skip


def _sample_cpu(pipe: LocalPipeline, seconds: float) -> dict[str, Any]:
    procs = {c.name: psutil.Process(c.proc.pid) for c in pipe.children}
    for p in procs.values():
        p.cpu_percent(None)
    time.sleep(max(0.5, seconds * 0.8))
    return {
        "cpu_percent": {n: round(p.cpu_percent(None)) for n, p in procs.items()},
        "rss_mb": {n: round(p.memory_info().rss / 2**20) for n, p in procs.items()},
    }


def run(quick: bool) -> dict[str, Any]:
    settings = BaseSettings.load()
    run_ = PipelineRun.named("bench-pipeline", metrics_port=19310)
    rates = [500.0] if quick else [1000.0, 2500.0, 5000.0, 7500.0, 10000.0]
    hold_s = 4.0 if quick else 20.0
    prepare(settings, run_, progress)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    base_s = int(time.time()) - 6 * 3600  # event times in the last hours, inside every horizon
    steps = []
    acked = 0
    with LocalPipeline(settings, run_, log_dir) as pipe:
        pipe.start_gateway()
        for n in range(2):
            pipe.start_processor(n)
        pipe.start_dead_letter_sink()
        time.sleep(5)  # group join and partition claims
        for i, rate in enumerate(rates):
            progress(f"step {rate:.0f} msgs/s ({rate * PACK:.0f} readings/s) for {hold_s:.0f} s")
            step = _step(pipe, settings, rate, hold_s, base_s + i * STEP_SPAN_S, acked_before=acked)
            acked += step["sent"]
            progress(f"  -> {step}")
            steps.append(step)
            if not step["sustained"]:
                break
        # the rate the publishers achieved in the highest sustained step (they may fall a little
        # short of the step's nominal rate): what the pipeline was shown to keep up with
        best = max((s for s in steps if s["sustained"]), key=lambda s: s["rate_msgs_per_s"],
                   default=None)  # fmt: skip
        sustained = min(best["rate_msgs_per_s"], best["achieved_msgs_per_s"]) if best else 0.0
        half = max(sustained / 2, 100.0)
        progress("draining before the latency step")
        wait_until(
            lambda: (
                pipe.gateway_metric("gateway_mqtt_acked_total") >= acked
                and sum(asyncio.run(lag(settings, run_))) == 0
            ),
            timeout_s=300,
        )
        progress(f"latency at {half:.0f} msgs/s (half the sustained maximum)")
        q: Any = mp.Queue()
        probe = mp.Process(target=_probe, args=(hold_s, 0.1, q))
        procs, load_q = _start_publishers(half, hold_s, base_s + len(rates) * STEP_SPAN_S)
        probe.start()
        seen = _watch_probe(run_.dsn(settings), hold_s + 8)
        sent_probe = q.get()
        probe.join()
        loaded = _join_publishers(procs, load_q)
        load_rate = round(sum(n for n, _ in loaded) / max(e for _, e in loaded))
        wait_until(lambda: sum(asyncio.run(lag(settings, run_))) == 0, timeout_s=60)
        time.sleep(2)
        total_sent = (
            sum(s["sent"] for s in steps) * PACK
            + sum(n for n, _ in loaded) * PACK
            + len(sent_probe)
        )
        with psycopg.connect(run_.dsn(settings)) as conn:
            # only this bench's devices: every run's gateway subscribes to pilots/#, so what
            # other users of the shared broker publish meanwhile lands here too
            counts = conn.execute(
                f"SELECT count(*) FILTER (WHERE {OURS}), count(*) FILTER (WHERE NOT {OURS}) "
                "FROM readings"
            ).fetchone()
            refused = conn.execute(f"SELECT count(*) FROM rejections WHERE {OURS}").fetchone()
            assert counts is not None  # an aggregate returns one row
            assert refused is not None
            (stored, foreign), rejected = counts, refused[0]
    lat = np.array([seen[t][0] - t for t in sent_probe if t in seen])
    missing_probe = sum(1 for t in sent_probe if t not in seen)
    pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if lat.size else (lambda q: None)
    last = steps[-1]
    results = {
        "readings_per_s": round(sustained * PACK),
        "sustained_step_msgs_per_s": best["rate_msgs_per_s"] if best else None,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(float(lat.max()), 1) if lat.size else None,
        "lost": int(total_sent - stored - rejected),
        "latency_parts": _stages(seen, sent_probe),
        "latency_load_achieved_msgs_per_s": load_rate,
        "probe_readings_not_seen": missing_probe,
        "stored": int(stored),
        "rejected": int(rejected),
        "foreign_readings": int(foreign),  # published by others on the shared broker
        "cpu_percent_last_step": last["cpu_percent"],
        "rss_mb_last_step": last["rss_mb"],
        "steps": steps,
    }
    params = {"pack": PACK, "rates_msgs_per_s": rates, "hold_s": hold_s, "gateways": 1, "processors": 2,
              "latency_rate_msgs_per_s": half, "quick": quick}  # fmt: skip
    return summary("pipeline", params, results)


def _start_publishers(rate: float, seconds: float, base_s: int) -> tuple[list[Any], Any]:
    """One publisher process per tenant, ``rate`` msgs/s split between them."""
    q: Any = mp.Queue()
    procs = [
        mp.Process(target=_publisher, args=(t, rate / len(TENANTS), seconds, base_s, 2000, q))
        for t in TENANTS
    ]
    for p in procs:
        p.start()
    return procs, q


def _join_publishers(procs: list[Any], q: Any) -> list[tuple[int, float]]:
    """(messages sent, seconds) of each publisher, once all have finished."""
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return results
