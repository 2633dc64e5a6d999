"""Dead letters from Kafka land in the rejections table once, with their offsets, on the real stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pilotstream import codec
from pilotstream.contracts import Rejection
from pilotstream.settings import BaseSettings
from processors.dead_letters import DeadLetterSinkConfig, run_dead_letter_sink
from storage.testing import create_temp_database, drop_database

pytestmark = pytest.mark.integration


@pytest.fixture
def dsn(pg_service: BaseSettings) -> Iterator[str]:
    dsn = create_temp_database(pg_service)
    yield dsn
    drop_database(pg_service, dsn)


async def _produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in values:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _sink_until(cfg: DeadLetterSinkConfig, dsn: str, rows: int, timeout_s: float = 30) -> int:
    stop = asyncio.Event()
    task = asyncio.create_task(run_dead_letter_sink(cfg, stop))
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while asyncio.get_running_loop().time() < deadline:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                n = (await (await conn.execute("SELECT count(*) FROM rejections")).fetchone())[0]
            if n >= rows:
                await asyncio.sleep(1.0)  # give a wrong extra row the chance to appear
                break
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        stored = await asyncio.wait_for(task, 15)
    return stored


async def test_dead_letters_are_stored_once_with_their_reason(
    kafka_service: BaseSettings, dsn: str
) -> None:
    topic = f"itest-rejected-{uuid.uuid4().hex[:8]}"
    good = [
        Rejection(
            reason=reason,
            detail="d",
            tenant="paris-energy-1",
            topic="pilots/paris-energy-1/json/m1",
            received_at_ms=1_767_225_600_000 + i,
            gateway_id="gw-1",
            payload=b"{bad",
            payload_size=4,
            msg_id=f"m1:{i}" if i else "",  # the first as from a publisher that sends no id
        )
        for i, reason in enumerate(["bad_json", "non_finite", "bad_json"])
    ]
    values = [(b"paris-energy-1", codec.encode(r)) for r in good] + [
        (b"paris-energy-1", b"not a rejection")
    ]
    await _produce(kafka_service.kafka_bootstrap, topic, values)
    cfg = DeadLetterSinkConfig(
        bootstrap=kafka_service.kafka_bootstrap, dsn=dsn, topic=topic, group=f"g-{topic}"
    )
    assert await _sink_until(cfg, dsn, 4) == 4
    # a restarted sink resumes from the offsets stored with the rows: nothing is stored twice
    assert await _sink_until(cfg, dsn, 5, timeout_s=4) == 0
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (
            await conn.execute(
                "SELECT reason, count(*) FROM rejections GROUP BY reason ORDER BY reason"
            )
        ).fetchall()
        ids = await (await conn.execute("SELECT msg_id FROM rejections ORDER BY msg_id")).fetchall()
        committed = await (
            await conn.execute(
                "SELECT sum(next_offset) FROM consumer_offsets WHERE topic = %s", (topic,)
            )
        ).fetchone()
    assert rows == [("bad_dead_letter", 1), ("bad_json", 2), ("non_finite", 1)]
    assert committed == (4,)
    assert [i for (i,) in ids] == ["", "", "m1:1", "m1:2"]  # the bad record has none
