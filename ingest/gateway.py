"""The gateway's asyncio core: batch, build, produce (or spool), then ack MQTT in arrival order.

Three supervised tasks share one ordered queue of work items:

- ``batcher`` takes up to ``batch_size`` messages from the inbox, builds their records (readings
  and dead letters) and starts their delivery to Kafka, or marks them for the spool while Kafka is
  down. The queue is bounded (``max_inflight_batches``), which bounds memory and, through the
  unacked MQTT window, makes the broker hold everything else.
- ``acker`` completes work items strictly in order: a failed delivery goes to the spool (in order),
  and only then are the messages acked to MQTT, so every acked message is in Kafka or on disk.
- ``drainer`` is the watchdog: when a delivery fails or times out it recreates the producer with
  capped, jittered backoff, forwards the spool in order, and switches back to direct delivery once
  the spool is empty.

Order: the spool keeps arrival order, and direct delivery resumes only once it is empty. Around
a failure a few batches already in flight may still reach Kafka before the spooled copies of
earlier ones, and a batch that failed midway may be delivered twice: consumers dedup on
(device_id, metric, ts) and must not assume per-device order across an outage.

Overflow policy when the spool is full: ``block`` (default) stops acking, so the broker keeps the
messages (alarm: metric ``gateway_spool_full`` and a log line); ``drop`` acks and counts the loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ingest.batch import Builder
from ingest.metrics import GatewayMetrics
from ingest.mqtt_source import Inbox, Message
from ingest.producer import Sink
from ingest.spool import Record, Spool
from pilotstream.logs import get_logger

_log = get_logger(__name__)
DRAIN_CHUNK = 2000  # spooled records sent per Kafka round trip while draining


@dataclass(slots=True)
class _Work:
    msgs: list[Message]
    records: list[Record]
    readings: int
    delivery: asyncio.Task[bool] | None  # None: Kafka is down, spool directly


@dataclass(frozen=True, slots=True)
class Tuning:
    """Batching and timing knobs (from GatewaySettings)."""

    batch_size: int = 1000
    linger_s: float = 0.005
    max_inflight_batches: int = 8
    produce_timeout_s: float = 10.0
    overflow: str = "block"  # block | drop
    max_messages: int = 0  # stop after acking this many (0: run until stopped)
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    stats_interval_s: float = 10.0


@dataclass
class Gateway:
    """Wires inbox -> builder -> sink/spool -> acks. I/O clients are passed in."""

    builder: Builder
    sink: Sink
    spool: Spool
    inbox: Inbox
    ack: Callable[[int, int], None]
    metrics: GatewayMetrics
    tuning: Tuning = field(default_factory=Tuning)
    kafka_ok: bool = True  # direct delivery: Kafka works and the spool is empty
    producer_ok: bool = True  # the current producer has not failed
    mqtt_ok: bool = False  # connected to the broker (set by the MQTT source)
    received: int = 0
    acked: int = 0
    first_received_at: float = 0.0  # perf_counter of the first message (throughput figures)
    last_acked_at: float = 0.0  # perf_counter of the latest ack
    _queue: asyncio.Queue[_Work | None] = field(init=False)
    _wake_drainer: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _acker_done: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _spool_full: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.tuning.max_inflight_batches)
        if self.spool.depth:  # left by an earlier run: forward it before anything new
            self.kafka_ok = False
        self._update_spool_metrics()

    def stop(self) -> None:
        """Stop taking messages; in-flight work is finished, spooled or left unacked."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop` (or ``max_messages``); returns when the last ack is queued."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._batcher(), name="gateway-batcher")
            tg.create_task(self._acker(), name="gateway-acker")
            tg.create_task(self._drainer(), name="gateway-drainer")
            tg.create_task(self._reporter(), name="gateway-reporter")

    def health(self) -> dict[str, object]:
        """State for the health endpoint."""
        return {
            "healthy": self.mqtt_ok and not self._spool_full,
            "mqtt": self.mqtt_ok,
            "kafka": self.kafka_ok,
            "spool_records": self.spool.depth,
            "spool_bytes": self.spool.bytes,
            "acked": self.acked,
        }

    # ---- tasks ----------------------------------------------------------------------------
    async def _batcher(self) -> None:
        t = self.tuning
        while not self._stop.is_set():
            msgs = await self.inbox.take(t.batch_size, t.linger_s, idle_s=0.1)
            if not msgs:
                continue
            if not self.received:
                self.first_received_at = time.perf_counter()
            self.received += len(msgs)
            self.metrics.received.inc(len(msgs))
            built = self.builder.build(msgs)
            for (reason, tenant), n in built.rejected.items():
                self.metrics.rejected.labels(reason, tenant).inc(n)
            delivery = None
            if self.kafka_ok and built.records:
                delivery = asyncio.create_task(self._deliver(built.records), name="gateway-deliver")
            await self._queue.put(_Work(msgs, built.records, built.readings, delivery))
            self.metrics.unacked.set(self.received - self.acked)
        await self._queue.put(None)

    async def _acker(self) -> None:
        try:
            while (w := await self._queue.get()) is not None:
                delivered = (await w.delivery) if w.delivery is not None else not w.records
                if not delivered:
                    await self._to_spool(w.records)
                self.metrics.forwarded.inc(w.readings)
                for m in w.msgs:
                    if m.qos:
                        self.ack(m.mid, m.qos)
                self.acked += len(w.msgs)
                self.last_acked_at = time.perf_counter()
                self.metrics.acked.inc(len(w.msgs))
                self.metrics.unacked.set(self.received - self.acked)
                if self.tuning.max_messages and self.acked >= self.tuning.max_messages:
                    self._stop.set()
        finally:
            self._acker_done.set()
            self._wake_drainer.set()

    async def _drainer(self) -> None:
        delay = self.tuning.backoff_min_s
        while not self._acker_done.is_set():
            if self.kafka_ok and self.spool.depth == 0:
                self._wake_drainer.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_drainer.wait(), 1.0)
                continue
            if not self.producer_ok and not await self._restart_producer():
                await self._sleep_unless_done(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, self.tuning.backoff_max_s)
                continue
            delay = self.tuning.backoff_min_s
            if await self._drain_spool():
                self.kafka_ok = True
                self.metrics.kafka_up.set(1)

    async def _reporter(self) -> None:
        """One stats line per ``stats_interval_s`` (throughput, backlog, spool)."""
        last, t_last = 0, time.perf_counter()
        while not self._acker_done.is_set():
            await self._sleep_unless_done(self.tuning.stats_interval_s)
            now = time.perf_counter()
            _log.info(
                "gateway_stats",
                acked=self.acked,
                msgs_per_s=round((self.acked - last) / max(now - t_last, 1e-9), 1),
                unacked=self.received - self.acked,
                inbox=len(self.inbox),
                queued_batches=self._queue.qsize(),
                spool_records=self.spool.depth,
                kafka=self.kafka_ok,
            )
            last, t_last = self.acked, now

    # ---- helpers --------------------------------------------------------------------------
    async def _deliver(self, records: list[Record]) -> bool:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.tuning.produce_timeout_s):
                await self.sink.send(records)
        except Exception as exc:  # any produce failure: the acker spools the batch
            if self.producer_ok:
                _log.warning("kafka_delivery_failed", error=repr(exc), records=len(records))
            self.kafka_ok = self.producer_ok = False
            self.metrics.kafka_up.set(0)
            self._wake_drainer.set()
            return False
        self.metrics.produce_latency.observe(time.perf_counter() - t0)
        return True

    async def _restart_producer(self) -> bool:
        """Watchdog: replace a failed or stuck producer with a fresh one."""
        await self.sink.stop()
        try:
            await self.sink.start()
        except Exception as exc:  # unreachable cluster: retry with backoff
            _log.info("kafka_still_down", error=repr(exc))
            return False
        self.metrics.producer_restarts.inc()
        _log.info("kafka_producer_recreated", spooled=self.spool.depth)
        self.producer_ok = True  # the spool drains first; then direct delivery resumes
        return True

    async def _drain_spool(self) -> bool:
        """Forward spooled records in order; True when the spool is empty."""
        while self.spool.depth > 0 and not self._acker_done.is_set():
            records, pos, size = self.spool.read(DRAIN_CHUNK)
            if not records:
                break
            if not await self._deliver(records):
                return False
            self.spool.commit(pos, len(records), size)
            self._update_spool_metrics()
            if self.spool.depth == 0:
                _log.info("spool_drained")
        return self.spool.depth == 0

    async def _to_spool(self, records: list[Record]) -> None:
        alarmed = False
        while not self.spool.append(records):
            if self.tuning.overflow == "drop":
                _log.error("spool_full_dropping", records=len(records))
                self.metrics.spool_dropped.inc(len(records))
                return
            if not alarmed:
                _log.error("spool_full_blocking", spool_bytes=self.spool.bytes)
                self.metrics.spool_full.set(1)
                self._spool_full = True
                alarmed = True
            self._wake_drainer.set()
            await asyncio.sleep(0.2)
        self._spool_full = False
        self.metrics.spool_full.set(0)
        self._update_spool_metrics()
        self._wake_drainer.set()

    def _update_spool_metrics(self) -> None:
        self.metrics.spool_depth.set(self.spool.depth)
        self.metrics.spool_bytes.set(self.spool.bytes)

    async def _sleep_unless_done(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._acker_done.wait(), seconds)
