"""Concurrent deliveries queue their records whole and in call order, so a device's readings
reach its Kafka partition in arrival order even when the producer makes a send wait."""

from __future__ import annotations

import asyncio
import random

from ingest.producer import KafkaSink
from ingest.spool import Record


class _SlowProducer:
    """Stands in for AIOKafkaProducer: ``send`` sometimes waits (a full batch) before queueing."""

    def __init__(self, seed: int) -> None:
        self.queued: list[bytes] = []
        self._rng = random.Random(seed)

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        if self._rng.random() < 0.3:
            await asyncio.sleep(self._rng.random() / 1000)
        self.queued.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_concurrent_sends_keep_call_order() -> None:
    sink = KafkaSink(bootstrap="127.0.0.1:1", client_id="t", compression="none")
    producer = _SlowProducer(seed=7)
    sink._producer = producer  # type: ignore[assignment]
    batches = [[Record("r", b"dev", f"{b}:{i}".encode()) for i in range(20)] for b in range(8)]
    await asyncio.gather(*(asyncio.create_task(sink.send(b)) for b in batches))
    assert producer.queued == [r.value for b in batches for r in b]
