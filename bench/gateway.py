"""Gateway throughput: QoS 1, manual acks after Kafka, SenML packs of 10 readings, real services.

Method: both consumers get a persistent MQTT session first; then the messages are published once
(each session queues its own copy in Mosquitto); then each consumer drains its queue alone, so the
publisher is never the bottleneck and the two never compete for the CPU:

- ours: ``pilotstream gateway`` (one process) until it has acked every message to MQTT, i.e. after
  Kafka acked the readings; the figure is messages / (last ack - first message), logged by the
  gateway itself; RSS is sampled while it runs;
- peer: ``mosquitto_sub -q 1 -c ... | kcat -P ...`` (C, no parsing, acks on receipt) until kcat
  has produced every line; the figure is messages / wall time of the pipeline.

Topics, share group, client ids and Kafka topics carry a unique tag so other engineers' runs are
not disturbed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.summary import progress, summary

TENANT = "paris-energy-1"
READINGS_PER_MSG = 10
DEVICES = 50


def run(quick: bool) -> dict[str, Any]:
    """Run both pipelines on the same messages; return the summary."""
    from pilotstream.settings import BaseSettings

    s = BaseSettings.load()
    # 60k, not more: Mosquitto rewrites its whole store every autosave (10 s in the local
    # config), so a backlog of hundreds of thousands queued messages slows the broker itself
    # and both consumers measure the broker instead of themselves.
    n = 20_000 if quick else 60_000
    tag = f"bgw{os.getpid()}x{int(time.time()) % 100000}"
    ours_id, peer_id = f"{tag}-gw", f"{tag}-peer"
    topic_filter = f"pilots/{TENANT}/senml/#"
    ours_sub = f"$share/{tag}/{topic_filter}"
    state = Path(s.state_dir).resolve() / "bench" / tag
    state.mkdir(parents=True, exist_ok=True)
    _ensure_topics(s.kafka_bootstrap, [f"{tag}.readings", f"{tag}.rejected", f"{tag}.peer"])

    try:
        progress(f"creating persistent sessions ({ours_id}, {peer_id})")
        _session(s, ours_id, ours_sub)
        _peer_session(s, peer_id, topic_filter)
        progress(f"publishing {n} SenML packs of {READINGS_PER_MSG} readings to {DEVICES} devices")
        t0 = time.perf_counter()
        _publish(s, tag, n)
        progress(f"published in {time.perf_counter() - t0:.1f}s")
        ours = _run_ours(s, tag, ours_id, ours_sub, n, state)
        progress(f"ours: {ours}")
        peer = _run_peer(s, tag, peer_id, topic_filter, n)
        progress(f"peer: {peer}")
    finally:  # never leave queued sessions behind: the broker would keep them for an hour
        for client_id in (ours_id, peer_id):
            _drop(s, client_id)
    params = {
        "messages": n,
        "readings_per_msg": READINGS_PER_MSG,
        "devices": DEVICES,
        "qos": 1,
        "method": "pre-published to persistent sessions, each consumer drains alone",
    }
    return summary(
        "gateway",
        params,
        ours,
        peer_name="mosquitto_sub -q 1 | kcat -P",
        peer_results=peer,
        ratio_key="msgs_per_s",
    )


def _drop(s: Any, client_id: str) -> None:
    from ingest.mqtt_source import drop_session

    drop_session(
        host=s.mqtt_host, port=s.mqtt_port, user=s.mqtt_gateway_user,
        password=s.mqtt_gateway_password, client_id=client_id,
    )  # fmt: skip


def _ensure_topics(bootstrap: str, topics: list[str]) -> None:
    import asyncio

    from ingest.producer import ensure_topics

    asyncio.run(ensure_topics(bootstrap, topics))


def _session(s: Any, client_id: str, sub: str) -> None:
    """Create the gateway's persistent session and subscription, then leave it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(s.mqtt_gateway_user, s.mqtt_gateway_password)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    c.connect(s.mqtt_host, s.mqtt_port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe(sub, qos=1)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()


def _peer_session(s: Any, client_id: str, topic_filter: str) -> None:
    subprocess.run(
        [*_sub_args(s, client_id, topic_filter), "-E"], check=True, timeout=30
    )  # fmt: skip


def _sub_args(s: Any, client_id: str, topic_filter: str) -> list[str]:
    return [
        "mosquitto_sub", "-h", s.mqtt_host, "-p", str(s.mqtt_port), "-V", "5", "-c", "-x", "3600",
        "-i", client_id, "-u", s.mqtt_gateway_user, "-P", s.mqtt_gateway_password,
        "-q", "1", "-t", topic_filter,
    ]  # fmt: skip


def _publish(s: Any, tag: str, n: int) -> None:
    """One mosquitto_pub -l per device, in parallel (QoS 1), lines = SenML packs."""
    now = time.time()
    procs = []
    per_dev = [n // DEVICES + (1 if d < n % DEVICES else 0) for d in range(DEVICES)]
    for d, count in enumerate(per_dev):
        device = f"{tag}-d{d}"
        lines = "\n".join(_pack(device, now, k) for k in range(count)) + "\n"
        p = subprocess.Popen(
            ["mosquitto_pub", "-h", s.mqtt_host, "-p", str(s.mqtt_port), "-V", "5", "-q", "1",
             "-u", TENANT, "-P", s.mqtt_pilot_password, "-i", f"{device}-pub",
             "-t", f"pilots/{TENANT}/senml/{device}", "-l"],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        assert p.stdin is not None
        p.stdin.write(lines.encode())
        p.stdin.close()
        procs.append(p)
        if len(procs) >= 10:
            for q in procs:
                q.wait(600)
            procs = []
    for q in procs:
        q.wait(600)


def _pack(device: str, now: float, k: int) -> str:
    base = now - 3600 + k
    recs: list[dict[str, Any]] = [
        {"bn": f"urn:dev:{device}:", "bt": base, "bu": "kWh", "n": "energy.active.import",
         "v": 1000.0 + k},
    ]  # fmt: skip
    recs += [{"n": "energy.active.import", "t": i, "v": 1000.0 + k + i / 10} for i in range(1, 5)]
    recs += [{"n": "power.active", "u": "kW", "t": i, "v": 3.0 + i / 100} for i in range(5)]
    recs.append({"n": "weather.temperature", "u": "Cel", "v": 5.5})
    return json.dumps(recs[:READINGS_PER_MSG], separators=(",", ":"))


def _run_ours(s: Any, tag: str, client_id: str, sub: str, n: int, state: Path) -> dict[str, Any]:
    env = dict(
        os.environ,
        PILOTSTREAM_GATEWAY_ID=client_id,
        PILOTSTREAM_MQTT_SUBSCRIPTION=sub,
        PILOTSTREAM_READINGS_TOPIC=f"{tag}.readings",
        PILOTSTREAM_REJECTED_TOPIC=f"{tag}.rejected",
        PILOTSTREAM_SPOOL_DIR=str(state / "spool"),
        PILOTSTREAM_MAX_MESSAGES=str(n),
        PILOTSTREAM_LOG_LEVEL="INFO",
    )
    progress("running pilotstream gateway")
    p = subprocess.Popen(
        [sys.executable, "-m", "pilotstream.cli", "gateway"], env=env, stderr=subprocess.PIPE
    )
    proc = psutil.Process(p.pid)
    rss = 0.0
    t0 = time.perf_counter()
    while p.poll() is None and time.perf_counter() - t0 < 600:
        try:
            rss = max(rss, proc.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    assert p.stderr is not None
    log = p.stderr.read().decode()
    p.wait(30)
    m = re.search(r"event=gateway_stopped acked=(\d+) spooled=(\d+) busy_s=([\d.]+)", log)
    if p.returncode != 0 or m is None:
        progress(log[-3000:])
        msg = f"gateway failed (rc {p.returncode})"
        raise RuntimeError(msg)
    acked, busy = int(m.group(1)), float(m.group(3))
    rejected = len(re.findall(r"event=decoder_failed", log))
    return {
        "msgs_per_s": round(acked / busy, 1),
        "readings_per_s": round(acked * READINGS_PER_MSG / busy, 1),
        "rss_mb": round(rss, 1),
        "seconds": round(busy, 3),
        "messages": acked,
        "decoder_failures": rejected,
    }


def _run_peer(s: Any, tag: str, client_id: str, topic_filter: str, n: int) -> dict[str, Any]:
    progress("running mosquitto_sub | kcat")
    t0 = time.perf_counter()
    sub = subprocess.Popen(
        [*_sub_args(s, client_id, topic_filter), "-C", str(n)], stdout=subprocess.PIPE
    )
    kcat = subprocess.Popen(
        ["kcat", "-P", "-b", s.kafka_bootstrap, "-t", f"{tag}.peer", "-X", "acks=all",
         "-X", "enable.idempotence=true", "-X", "linger.ms=5"],
        stdin=sub.stdout,
    )  # fmt: skip
    assert sub.stdout is not None
    sub.stdout.close()
    sub.wait(600)
    kcat.wait(600)
    seconds = time.perf_counter() - t0
    return {
        "msgs_per_s": round(n / seconds, 1),
        "readings_per_s": round(n * READINGS_PER_MSG / seconds, 1),
        "seconds": round(seconds, 3),
        "messages": n,
    }
