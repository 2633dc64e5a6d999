"""The gateway against the real stack: delivery, crash recovery, Kafka outage, broker ACL.

The outage lasts 60 s; ``PILOTSTREAM_TEST_SHORT_OUTAGE=1`` shortens it to 15 s (CI).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
import pytest

pytestmark = pytest.mark.integration
TENANT = "paris-energy-1"


def _messages(tag: str, devices: int, per_device: int, first: int = 0) -> list[tuple[str, bytes]]:
    """JSON messages, one reading each, seq first..first+per_device-1 per device, interleaved."""
    now = int(time.time() * 1000)
    out = []
    for seq in range(first, first + per_device):
        for d in range(devices):
            doc = {"readings": [{"metric": "energy.active.import", "ts_ms": now - 60_000 + seq,
                                 "value": 1000 + seq, "unit": "Wh", "seq": seq}]}  # fmt: skip
            out.append((f"pilots/{TENANT}/json/{tag}-d{d}", json.dumps(doc).encode()))
    return out


def _seqs(batches: list[Any]) -> Counter[tuple[str, int]]:
    return Counter((b.device_id, s) for b in batches for s in b.seq)


def _want(tag: str, devices: int, seqs: range | list[int]) -> set[tuple[str, int]]:
    return {(f"{tag}-d{d}", s) for d in range(devices) for s in seqs}


def test_10k_messages_arrive_as_readings(gateway, publisher, reader, tag: str) -> None:  # type: ignore[no-untyped-def]
    gateway.start()
    bad_topic = f"pilots/{TENANT}/json/{tag}-bad"
    bad = [
        (bad_topic, b'{"readings": [{"metric": "power.active", "value": NaN}]}'),
        (bad_topic, b'{"readings": [], "readings": []}'),
        (bad_topic, json.dumps({"readings": [{"metric": "power.active", "ts_ms": 1, "value": 1, "unit": "kW"}]}).encode()),
    ]  # fmt: skip
    codes = publisher(TENANT, _messages(tag, devices=100, per_device=100) + bad)
    assert set(codes) == {0}
    batches = reader(gateway.readings_topic, prefix=tag, until=10_000, timeout_s=60)
    seqs = _seqs(batches)
    assert set(seqs) == _want(tag, 100, range(100))
    assert all(n == 1 for n in seqs.values())  # no loss, and no duplicate in a calm run
    b = next(b for b in batches if b.device_id == f"{tag}-d0")
    assert (b.tenant, b.city, b.unit[0], b.kind[0]) == (TENANT, "paris", "kWh", "counter")
    assert b.value[0] == pytest.approx(1.0 + b.seq[0] / 1000)  # Wh -> kWh
    letters = reader(gateway.rejected_topic, prefix=tag, until=3, timeout_s=30, what="letters")
    assert sorted(x.reason for x in letters) == ["duplicate_key", "non_finite", "too_old"]
    assert all(x.tenant == TENANT and x.topic == bad_topic and x.payload for x in letters)
    assert gateway.stop() == 0  # SIGTERM: drains and exits cleanly
    gateway.wait_for_log("gateway_stopped", 5)


def test_kill_9_mid_stream_loses_nothing(gateway, publisher, reader, tag: str) -> None:  # type: ignore[no-untyped-def]
    gateway.env["PILOTSTREAM_BATCH_SIZE"] = "200"
    gateway.start()
    pub = threading.Thread(target=publisher, args=(TENANT, _messages(tag, 50, 200)))
    pub.start()
    reader(gateway.readings_topic, prefix=tag, until=1000, timeout_s=30)  # well under way
    gateway.kill9()  # mid-stream: batches in flight, messages received but not acked
    pub.join(120)
    gateway.start()  # same client id: the broker resumes the session and redelivers
    gateway.wait_for_log("mqtt_subscribed", 5, count=2)
    assert "session_present=True" in gateway.log.read_text()
    batches = reader(gateway.readings_topic, prefix=tag, until=10_000, timeout_s=90)
    assert set(_seqs(batches)) == _want(tag, 50, range(200))


def test_kafka_outage_spools_and_drains(gateway, kafka_proxy, publisher, reader, tag: str) -> None:  # type: ignore[no-untyped-def]
    outage_s = 15 if os.environ.get("PILOTSTREAM_TEST_SHORT_OUTAGE") == "1" else 60
    port = _free_port()
    gateway.env.update(
        PILOTSTREAM_METRICS_PORT=str(port),
        PILOTSTREAM_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka_proxy.port}",
        PILOTSTREAM_PRODUCE_TIMEOUT_S="3",
        PILOTSTREAM_BATCH_SIZE="200",
    )
    gateway.start()
    publisher(TENANT, _messages(tag, devices=20, per_device=50))  # 1,000 before the cut
    assert len(_seqs(reader(gateway.readings_topic, prefix=tag, until=1000, timeout_s=30))) == 1000
    kafka_proxy.cut()
    t_cut = time.monotonic()
    publisher(TENANT, _messages(tag, devices=20, per_device=250, first=1000))  # under load
    gateway.wait_for_log("kafka_delivery_failed", 30)
    deadline = time.monotonic() + 30
    while (m := _metrics(port))["gateway_mqtt_acked_total"] < 6000 and time.monotonic() < deadline:
        time.sleep(0.2)
    # every message is acked to MQTT while Kafka is away: it is in the spool
    assert m["gateway_mqtt_acked_total"] == 6000
    assert m["gateway_spool_records"] > 0
    assert m["gateway_kafka_up"] == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        health = json.loads(r.read())
    assert (r.status, health["healthy"], health["kafka"]) == (200, True, False)
    assert health["spool_records"] > 0
    time.sleep(max(0.0, outage_s - (time.monotonic() - t_cut)))
    kafka_proxy.restore()
    gateway.wait_for_log("spool_drained", 120)
    batches = reader(gateway.readings_topic, prefix=tag, until=6000, timeout_s=60)
    assert set(_seqs(batches)) == _want(tag, 20, [*range(50), *range(1000, 1250)])
    assert _metrics(port)["gateway_spool_records"] == 0
    assert gateway.stop() == 0


def test_pilot_cannot_publish_under_another_pilots_prefix(
    mqtt_service, publisher, tag: str
) -> None:  # type: ignore[no-untyped-def]
    got: list[str] = []
    sub = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"{tag}-sub", protocol=mqtt.MQTTv5
    )
    sub.username_pw_set(mqtt_service.mqtt_gateway_user, mqtt_service.mqtt_gateway_password)
    sub.on_message = lambda _c, _u, m: got.append(m.topic)
    sub.connect(mqtt_service.mqtt_host, mqtt_service.mqtt_port)
    sub.loop_start()
    try:
        sub.subscribe(f"pilots/+/json/{tag}-acl", qos=1)
        time.sleep(0.5)
        foreign = publisher(TENANT, [(f"pilots/amsterdam-energy-1/json/{tag}-acl", b"{}")])
        own = publisher(TENANT, [(f"pilots/{TENANT}/json/{tag}-acl", b"{}")])
        time.sleep(1.0)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert own == [0]
    assert foreign == [0x87]  # MQTT 5 PUBACK: not authorized
    assert got == [f"pilots/{TENANT}/json/{tag}-acl"]  # nothing came through the foreign prefix


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> dict[str, float]:
    """The gateway's unlabelled Prometheus samples."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out
