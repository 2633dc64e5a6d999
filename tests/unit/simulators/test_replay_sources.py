"""Replay sources: messages for MQTT, reading batches for Kafka (without what a gateway refuses)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pilotstream.codec import decode_batch
from simulators.publishers.files import write_run
from simulators.publishers.kafka import LOST
from simulators.replay import kafka_items, mqtt_items
from simulators.run import Run


def test_mqtt_items_are_the_recorded_messages_in_delivery_order(
    demo_run: Run, tmp_path: Path
) -> None:
    write_run(demo_run, tmp_path)
    items = mqtt_items(tmp_path)
    assert items.height == demo_run.messages.height
    assert items["deliver_at_ms"].is_sorted()
    assert items["payload"].to_list() == demo_run.messages["payload"].to_list()


def test_kafka_items_leave_out_refused_messages_and_keep_duplicates(
    demo_run: Run, tmp_path: Path
) -> None:
    write_run(demo_run, tmp_path)
    items = kafka_items(tmp_path / "messages.jsonl")
    lost = demo_run.messages.filter(pl.col("fault").is_in(LOST)).height
    assert items.height == demo_run.messages.height - lost
    batches = [decode_batch(v) for v in items["value"]]
    assert (
        sum(len(b) for b in batches)
        == demo_run.readings.join(
            demo_run.messages.filter(~pl.col("fault").is_in(LOST)).select(
                src=pl.col("msg_id").str.replace("#dup$", "")
            ),
            left_on="msg_id",
            right_on="src",
        ).height
    )
    assert all(k == b.device_id.encode() for k, b in zip(items["key"], batches, strict=True))
    units = {u for b in batches for u in b.unit}
    assert units <= {"kWh", "kW", "count", "km", "Cel", "mm"}  # canonical only
