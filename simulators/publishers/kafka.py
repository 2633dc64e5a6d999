"""Kafka output, bypassing the gateway: one ReadingBatch per message, key = device id.

The producer is safe by construction (acks=all, idempotence) and batches: sends are enqueued without
awaiting each acknowledgement, and :meth:`KafkaPublisher.flush` awaits them all.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import polars as pl
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from pilotstream.codec import encode
from pilotstream.contracts import NO_SEQ, ReadingBatch
from pilotstream.errors import ServiceUnavailable
from pilotstream.settings import BaseSettings
from pilotstream.topics import READINGS
from simulators.faults import MALFORMED

GATEWAY_ID = "simulator"
LOST = (*MALFORMED, "wrong_tenant")  # message faults whose readings never pass a gateway


def reading_batches(readings: pl.DataFrame, messages: pl.DataFrame) -> pl.DataFrame:
    """Kafka records for the messages a gateway would forward, in delivery order.

    Args:
        readings: readings as sent, with ``msg_id`` (canonical values and units).
        messages: ``msg_id``, ``deliver_at_ms`` and optionally ``fault``; copies of duplicated
            messages (``...#dup``) are sent again.

    Returns:
        columns ``deliver_at_ms``, ``key`` (device id bytes) and ``value`` (encoded ReadingBatch).
    """
    from pilotstream.vocab import METRICS

    units = {m: s.unit for m, s in METRICS.items()}
    msgs = messages
    if "fault" in msgs.columns:
        msgs = msgs.filter(~pl.col("fault").is_in(LOST))
    msgs = msgs.select("msg_id", "deliver_at_ms").with_columns(
        _src=pl.col("msg_id").str.replace(r"#dup$", "")
    )
    grouped = (
        readings.with_columns(unit=pl.col("metric").replace_strict(units))
        .group_by("msg_id", maintain_order=True)
        .agg(
            pl.col("tenant", "city", "device_id").first(),
            pl.col("metric", "ts_ms", "value", "unit", "kind"),
        )
    )
    joined = msgs.join(
        grouped, left_on="_src", right_on="msg_id", how="inner", maintain_order="left"
    )
    values = [
        encode(
            ReadingBatch(
                tenant=r["tenant"],
                city=r["city"],
                device_id=r["device_id"],
                gateway_id=GATEWAY_ID,
                received_at_ms=r["deliver_at_ms"],
                metric=r["metric"],
                ts_ms=r["ts_ms"],
                value=r["value"],
                unit=r["unit"],
                kind=r["kind"],
                seq=[NO_SEQ] * len(r["ts_ms"]),
            )
        )
        for r in joined.iter_rows(named=True)  # one object per message, not per reading
    ]
    return pl.DataFrame(
        {
            "deliver_at_ms": joined["deliver_at_ms"],
            "key": joined["device_id"].cast(pl.Binary),
            "value": pl.Series(values, dtype=pl.Binary),
        }
    )


async def ensure_topic(settings: BaseSettings, topic: str, partitions: int = 6) -> None:
    """Create ``topic`` if missing (replication 1: the local single-node cluster)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        msg = f"Kafka {settings.kafka_bootstrap} unreachable: {exc}"
        raise ServiceUnavailable(msg) from exc
    try:
        if topic not in set(await admin.list_topics()):
            await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


class KafkaPublisher:
    """``async with KafkaPublisher(settings=s) as k: await k.send(key, value)``."""

    def __init__(
        self, *, settings: BaseSettings, topic: str = READINGS, window: int = 2000
    ) -> None:
        if window < 1:
            msg = f"window must be >= 1, not {window}"
            raise ValueError(msg)
        self._settings = settings
        self.topic = topic
        self._window = window
        self._futures: list[asyncio.Future[object]] = []
        self._producer: AIOKafkaProducer | None = None
        self.sent = 0

    async def __aenter__(self) -> KafkaPublisher:
        await ensure_topic(self._settings, self.topic)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            max_batch_size=256 * 1024,
            compression_type=None,
        )
        try:
            await self._producer.start()
        except KafkaConnectionError as exc:
            msg = f"Kafka {self._settings.kafka_bootstrap} unreachable: {exc}"
            raise ServiceUnavailable(msg) from exc
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._producer is not None
        try:
            if et is None:
                await self.flush()
        finally:
            await self._producer.stop()

    async def send(self, key: bytes, value: bytes) -> None:
        """Enqueue one record; awaits acknowledgements once ``window`` are outstanding."""
        assert self._producer is not None, "use KafkaPublisher in 'async with'"
        self._futures.append(await self._producer.send(self.topic, value=value, key=key))
        self.sent += 1
        if len(self._futures) >= self._window:
            await self.flush()

    async def flush(self) -> None:
        """Await every outstanding acknowledgement."""
        futures, self._futures = self._futures, []
        if futures:
            await asyncio.gather(*futures)
