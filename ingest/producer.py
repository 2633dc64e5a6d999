"""Kafka behind a small interface: send a batch of records and wait until Kafka has them all.

:class:`Sink` is the contract the gateway uses (unit tests use a fake); :class:`KafkaSink` is the
aiokafka implementation: ``acks="all"``, idempotence on, linger and batch size from the settings,
key = device id for readings (tenant for dead letters), so one device's batches keep their order
inside a partition: concurrent :meth:`KafkaSink.send` calls queue their records one call after
the other, in call order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer, codec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from ingest.spool import Record
from pilotstream.errors import ServiceUnavailable, SettingsError
from pilotstream.logs import get_logger

_log = get_logger(__name__)


class Sink(Protocol):
    """Where records go. ``send`` returns only when every record is acknowledged, else raises."""

    async def start(self) -> None:
        """Connect; raises ServiceUnavailable when the cluster cannot be reached."""
        ...

    async def send(self, records: Sequence[Record]) -> None:
        """Send and wait for all acks; raises on any failure (the caller spools the batch)."""
        ...

    async def stop(self) -> None:
        """Flush and close."""
        ...


class KafkaSink:
    """aiokafka producer with the safe settings the gateway needs."""

    def __init__(
        self,
        *,
        bootstrap: str,
        client_id: str,
        linger_ms: int = 5,
        max_batch_bytes: int = 1024 * 1024,
        compression: str = "lz4",
        request_timeout_ms: int = 30_000,
    ) -> None:
        if compression != "none" and not _codec_available(compression):
            msg = f"compression {compression!r} needs its codec (cramjam); install it or use none"
            raise SettingsError(msg)
        self._kwargs = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "max_batch_size": max_batch_bytes,
            "max_request_size": max(max_batch_bytes, 1024 * 1024),
            "compression_type": None if compression == "none" else compression,
            "request_timeout_ms": request_timeout_ms,
        }
        self._producer: AIOKafkaProducer | None = None
        # The gateway delivers several batches at once; aiokafka's send() may wait (a full
        # partition batch, metadata), so without this a later batch's records could be queued
        # before an earlier one's and a device's readings reach Kafka out of order.
        self._enqueue = asyncio.Lock()

    async def start(self) -> None:
        """Create and start a fresh producer (also how the watchdog replaces a stuck one)."""
        producer = AIOKafkaProducer(**self._kwargs)
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await _quiet_stop(producer, 1.0)
            msg = f"Kafka at {self._kwargs['bootstrap_servers']} unreachable: {exc!r}"
            raise ServiceUnavailable(msg) from exc
        self._producer = producer

    async def send(self, records: Sequence[Record]) -> None:
        """Queue every record, then wait for all acks (aiokafka batches them by partition)."""
        producer = self._producer
        if producer is None:
            msg = "producer not started"
            raise ServiceUnavailable(msg)
        async with self._enqueue:  # batches are queued whole, in call order (the lock is FIFO)
            futures = [await producer.send(r.topic, r.value, key=r.key) for r in records]
        await asyncio.gather(*futures)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Flush and close; a producer that will not stop in time is abandoned."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quiet_stop(producer, timeout_s)


def _codec_available(compression: str) -> bool:
    checks = {"gzip": codec.has_gzip, "lz4": codec.has_lz4, "zstd": codec.has_zstd}
    return bool(checks.get(compression, codec.has_snappy)())


async def _quiet_stop(producer: AIOKafkaProducer, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await producer.stop()
    except Exception as exc:  # a stuck or broken producer is dropped, never fatal
        _log.warning("kafka_producer_stop_failed", error=repr(exc))


async def ensure_topics(bootstrap: str, topics: Sequence[str], partitions: int = 6) -> None:
    """Create missing topics (replication 1, the local single-node cluster)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()
