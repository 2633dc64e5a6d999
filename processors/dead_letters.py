"""The dead-letter sink: gateway rejections from ``pilotstream.rejected.v1`` into the ``rejections``
table, so dashboards and the demo count every refused message by reason and tenant.

Effectively once, like the processors: the rows and the consumer offsets are committed in one
transaction (``storage.writer.Writer.commit_batch``), fenced by the generation claimed when the
partitions were assigned. A record that is not a valid Rejection is stored with reason
``bad_dead_letter`` and its raw bytes, never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from pilotstream import codec, topics
from pilotstream.errors import DecodeError
from pilotstream.logs import get_logger
from storage.errors import StaleGeneration
from storage.frames import REJECTIONS
from storage.offsets import claim_partitions
from storage.writer import Writer

log = get_logger(__name__)
EXCERPT_BYTES = 4096  # raw bytes kept of a record that is not a Rejection


@dataclass(frozen=True, kw_only=True)
class DeadLetterSinkConfig:
    """Where the sink reads from and writes to."""

    bootstrap: str  # Kafka bootstrap servers
    dsn: str  # TimescaleDB connection string
    topic: str = topics.REJECTED  # dead-letter topic
    group: str = "pilotstream-dead-letters"  # consumer group (offsets live in the database)
    max_records: int = 5000  # per poll
    poll_timeout_ms: int = 500  # per poll

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.poll_timeout_ms < 1:
            msg = "max_records and poll_timeout_ms must be positive"
            raise ValueError(msg)


def rejections_frame(records: Sequence[ConsumerRecord[bytes, bytes]]) -> pl.DataFrame:
    """Kafka records of the dead-letter topic as rows of ``storage.frames.REJECTIONS``."""
    rows: dict[str, list[object]] = {name: [] for name in REJECTIONS}
    for rec in records:  # one decode per record is the unit of work here, as in any consumer
        value = rec.value or b""
        try:
            r = codec.decode_rejection(value)
            row = (r.received_at_ms, r.tenant, r.device_id, r.reason, r.topic, r.detail,
                   r.gateway_id, r.payload, r.payload_size, r.msg_id)  # fmt: skip
        except DecodeError as exc:
            row = (rec.timestamp, (rec.key or b"").decode("utf-8", "replace"), "", "bad_dead_letter",
                   rec.topic, str(exc)[:500], "", value[:EXCERPT_BYTES], len(value), "")  # fmt: skip
        for name, v in zip(REJECTIONS, row, strict=True):
            rows[name].append(v)
    return pl.DataFrame(rows, schema=REJECTIONS)


class _Claims(ConsumerRebalanceListener):  # type: ignore[misc]
    """Claims a fresh generation on every assignment and seeks to the offsets stored with the rows."""

    def __init__(self, consumer: AIOKafkaConsumer, cfg: DeadLetterSinkConfig):
        self.consumer = consumer
        self.cfg = cfg
        self.generation = 0
        # first offset not yet stored, per partition: records below it are already in the database.
        # Guarded again in the poll loop, because the client may reset a position after our seek.
        self.floor: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Nothing buffered: every poll is committed before the next one."""

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if not assigned:
            return
        async with await psycopg.AsyncConnection.connect(self.cfg.dsn, autocommit=True) as conn:
            claim = await claim_partitions(
                conn,
                group=self.cfg.group,
                topic=self.cfg.topic,
                partitions=[tp.partition for tp in assigned],
            )
        self.generation = claim.generation
        self.floor = {tp: claim.offsets.get(tp.partition, 0) for tp in assigned}
        for tp in assigned:
            if tp.partition in claim.offsets:
                self.consumer.seek(tp, claim.offsets[tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)
        log.info("dead_letters_assigned", partitions=len(assigned), generation=claim.generation)


async def run_dead_letter_sink(cfg: DeadLetterSinkConfig, stop: asyncio.Event) -> int:
    """Consume dead letters into the database until ``stop`` is set; returns rows stored."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cfg.bootstrap,
        group_id=cfg.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=30_000,  # a busy 2-core host must not look dead between polls
        heartbeat_interval_ms=3_000,
    )
    listener = _Claims(consumer, cfg)
    consumer.subscribe([cfg.topic], listener=listener)
    stored = 0
    await consumer.start()
    try:
        async with Writer(dsn=cfg.dsn) as writer:
            while not stop.is_set():
                polled = await consumer.getmany(
                    timeout_ms=cfg.poll_timeout_ms, max_records=cfg.max_records
                )
                fresh = {
                    tp: [r for r in recs if r.offset >= listener.floor.get(tp, 0)]
                    for tp, recs in polled.items()
                }
                for tp, recs in polled.items():
                    if recs and not fresh[tp]:  # a reset position replayed stored records
                        consumer.seek(tp, listener.floor[tp])
                records = [rec for recs in fresh.values() for rec in recs]
                if not records:
                    continue
                offsets = {
                    (tp.topic, tp.partition): recs[-1].offset + 1
                    for tp, recs in fresh.items()
                    if recs
                }
                try:
                    result = await writer.commit_batch(
                        readings=None,
                        rejections=rejections_frame(records),
                        offsets=offsets,
                        group=cfg.group,
                        generation=listener.generation,
                    )
                except StaleGeneration as exc:
                    # a rebalance gave these partitions to a newer claim; nothing was written, the
                    # new owner (maybe this consumer, re-assigned) reads them again from the stored offsets
                    log.warning("dead_letters_fenced", detail=str(exc))
                    continue
                stored += result.rejections
                listener.floor.update(
                    {tp: recs[-1].offset + 1 for tp, recs in fresh.items() if recs}
                )
    finally:
        await consumer.stop()
    return stored
