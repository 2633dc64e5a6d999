"""The gateway core with a fake sink: ack order, spool on failure, drain on recovery, overflow."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.gateway import Gateway, Tuning
from ingest.metrics import GatewayMetrics
from ingest.mqtt_source import Inbox, Message
from ingest.service import make_builder
from ingest.settings import GatewaySettings
from ingest.spool import Spool
from pilotstream.codec import decode_batch

if TYPE_CHECKING:
    from conftest import FakeSink


def _msg(i: int) -> Message:
    now = int(time.time() * 1000)
    doc = {
        "readings": [{"metric": "power.active", "ts_ms": now, "value": i, "unit": "kW", "seq": i}]
    }
    return Message(i, 1, f"pilots/paris-energy-1/json/m{i % 3}", json.dumps(doc).encode(), now)


def _gateway(tmp: Path, sink: FakeSink, acks: list[int], **tuning: object) -> Gateway:
    s = GatewaySettings.load(env={}, overrides={"spool_dir": str(tmp), "gateway_id": "gw-unit"})
    t = {"batch_size": 7, "linger_s": 0.001, "max_inflight_batches": 3, "produce_timeout_s": 0.5,
         "backoff_min_s": 0.01, "backoff_max_s": 0.05}  # fmt: skip
    t.update(tuning)
    spool = Spool(path=tmp, max_bytes=int(t.pop("spool_max", 1 << 20)), segment_bytes=4096)  # type: ignore[call-overload]
    return Gateway(
        builder=make_builder(s),
        sink=sink,
        spool=spool,
        inbox=Inbox(asyncio.get_running_loop()),
        ack=lambda mid, qos: acks.append(mid),
        metrics=GatewayMetrics(),
        tuning=Tuning(**t),  # type: ignore[arg-type]
    )


def _seqs(sink: FakeSink) -> list[int]:
    return sorted(s for r in sink.sent for s in decode_batch(r.value).seq)


async def test_acks_in_arrival_order_after_kafka(tmp_path: Path, fake_sink: FakeSink) -> None:
    sink, acks = fake_sink, []
    gw = _gateway(tmp_path, sink, acks, max_messages=50)
    for i in range(50):
        gw.inbox.put(_msg(i))
    await asyncio.wait_for(gw.run(), 10)
    assert acks == list(range(50))
    assert _seqs(sink) == list(range(50))
    gw.spool.close()


async def test_kafka_down_spools_then_drains_in_order(tmp_path: Path, fake_sink: FakeSink) -> None:
    sink, acks = fake_sink, []
    sink.down = True
    gw = _gateway(tmp_path, sink, acks)
    task = asyncio.create_task(gw.run())
    for i in range(40):
        gw.inbox.put(_msg(i))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if len(acks) == 40:
            break
    assert acks == list(range(40))  # acked because they are on disk
    assert gw.spool.depth > 0
    assert not sink.sent
    sink.down = False
    for _ in range(200):
        await asyncio.sleep(0.02)
        if gw.spool.depth == 0 and gw.kafka_ok:
            break
    assert gw.spool.depth == 0
    assert gw.kafka_ok
    assert _seqs(sink) == list(range(40))
    for i in range(40, 45):  # direct delivery again
        gw.inbox.put(_msg(i))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(acks) == 45:
            break
    gw.stop()
    await asyncio.wait_for(task, 5)
    assert _seqs(sink) == list(range(45))
    assert gw.metrics.producer_restarts._value.get() >= 1
    gw.spool.close()


async def test_full_spool_blocks_acks_until_kafka_returns(
    tmp_path: Path, fake_sink: FakeSink
) -> None:
    sink, acks = fake_sink, []
    sink.down = True
    gw = _gateway(tmp_path, sink, acks, spool_max=4096)
    task = asyncio.create_task(gw.run())
    for i in range(200):
        gw.inbox.put(_msg(i))
    await asyncio.sleep(1.0)
    assert 0 < len(acks) < 200  # stopped acking: the broker keeps the rest
    assert acks == list(range(len(acks)))
    assert gw.metrics.spool_full._value.get() == 1
    assert not gw.health()["healthy"]
    sink.down = False
    for _ in range(300):
        await asyncio.sleep(0.02)
        if len(acks) == 200 and gw.spool.depth == 0:
            break
    gw.stop()
    await asyncio.wait_for(task, 5)
    assert acks == list(range(200))
    assert _seqs(sink) == list(range(200))
    gw.spool.close()
