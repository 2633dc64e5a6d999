"""Reading batches go straight to Kafka (acks=all, idempotent) and decode back to the readings."""

from __future__ import annotations

import uuid

import polars as pl
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from pilotstream.codec import decode_batch
from pilotstream.settings import BaseSettings
from simulators.publishers.kafka import KafkaPublisher, reading_batches
from simulators.run import simulate
from simulators.scenario import load_scenario, with_overrides

pytestmark = pytest.mark.integration


async def test_batches_round_trip_through_kafka(kafka_service: BaseSettings) -> None:
    run = simulate(with_overrides(load_scenario("demo"), faults=False))
    devices = run.readings["device_id"].unique(maintain_order=True).head(6)
    readings = run.readings.filter(pl.col("device_id").is_in(devices.implode()))
    messages = run.messages.filter(pl.col("device_id").is_in(devices.implode())).head(300)
    readings = readings.filter(pl.col("msg_id").is_in(messages["msg_id"].implode()))
    records = reading_batches(readings, messages)
    topic = f"simtest.readings.{uuid.uuid4().hex[:10]}"
    try:
        async with KafkaPublisher(settings=kafka_service, topic=topic, window=100) as pub:
            for key, value in records.select("key", "value").iter_rows():
                await pub.send(key, value)
        assert pub.sent == records.height == messages.height
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_service.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        got = []
        try:
            while len(got) < records.height:
                polled = await consumer.getmany(timeout_ms=5000, max_records=500)
                if not polled:
                    break
                got += [r for rs in polled.values() for r in rs]
        finally:
            await consumer.stop()
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_service.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    batches = [decode_batch(r.value) for r in got]
    assert len(batches) == records.height
    assert all(r.key == b.device_id.encode() for r, b in zip(got, batches, strict=True))
    rows = sorted(
        (b.device_id, m, t, v)
        for b in batches
        for m, t, v in zip(b.metric, b.ts_ms, b.value, strict=True)
    )
    expected = sorted(readings.select("device_id", "metric", "ts_ms", "value").iter_rows())
    assert rows == expected
    assert {b.gateway_id for b in batches} == {"simulator"}
