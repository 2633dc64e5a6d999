"""The processor service: a Kafka consumer-group member feeding :class:`BatchProcessor`.

- Offsets live in TimescaleDB, not in Kafka (auto-commit off): on assignment the listener claims
  the partitions (a new fencing generation), seeks to the stored offsets (none: the beginning) and
  starts their states empty; recently active devices are rebuilt from the database at once, the
  others on first sight. A fetch that starts past the next offset (made before the seek) is
  dropped and re-sought; records below it are skipped.
- The assigned partitions are dealt to ``writer_lanes`` lanes, each with its own database
  connection. Each poll is ONE transaction per lane (readings, windows, rejections and the
  offsets of that lane's partitions), committed while the next lane or poll is prepared; a lane
  has at most one commit in flight, so each partition's commits stay in order, and lanes share
  no partition, device or window, so their transactions never touch the same rows. Why lanes:
  one backend running COPY and upserts is the bottleneck (the kernels wait for it most of the
  time); a second one uses the CPU the first leaves idle. So that it does, a poll asks first
  for the records of the lanes with no commit in flight (fetched records come a partition at a
  time: an unrestricted poll may return mostly the lane that is busy), and with every lane busy the
  next poll waits for the first one to finish. The changed windows then go to the
  deltas topic (at least once). A lock keeps a rebalance from interleaving with a batch:
  revocation and assignment wait for every commit in flight. A fenced member
  (StaleGeneration) exits 1.
- The idle timer runs between polls: windows of devices silent for ``idle_close_s`` close.
- SIGTERM/SIGINT stop polling; the batch in flight commits; ``exit_when_idle_s`` closes every open
  window and exits once the lag is zero and nothing arrived for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pilotstream.logs import get_logger
from pilotstream.registry import load_registry
from processors.baseline_provider import BaselineProvider, StoredBaselines
from processors.batch import BatchProcessor, PollResult, Prepared, Record
from processors.factors import load_factors
from processors.kernels import EventTimeParams
from processors.metrics import BatchTimes, ProcessorMetrics, serve_http
from processors.settings import ProcessorSettings
from processors.sink import DeltaPublisher
from processors.state import load_history, recent_devices
from storage.errors import StaleGeneration
from storage.offsets import claim_partitions
from storage.writer import Writer

log = get_logger(__name__)
ProviderFactory = Callable[[psycopg.AsyncConnection], BaselineProvider]


def event_time_params(s: ProcessorSettings) -> EventTimeParams:
    """Kernel parameters from the settings."""
    return EventTimeParams(
        allowed_lateness_ms=s.allowed_lateness_s * 1000,
        max_future_ms=s.max_future_skew_s * 1000,
        min_coverage=s.min_coverage,
    )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ProcessorService):
        self._svc = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._svc.revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._svc.assigned([tp.partition for tp in assigned])


class ProcessorService:
    """One processor process (see module doc); ``await run()`` returns an exit code."""

    def __init__(self, settings: ProcessorSettings, *, provider: ProviderFactory | None = None):
        self.s = settings
        self.metrics = ProcessorMetrics()
        self.times = BatchTimes()
        self._provider_factory = provider
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._epoch = 0  # bumped at every assignment: records polled before it are dropped
        self._assigned: list[int] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._proc: BatchProcessor | None = None
        self._last_batch = time.monotonic()
        self._rebalanced = time.monotonic()  # idle exit waits a full period after a rebalance
        self._healthy = False
        # lane -> (commit in flight, monotonic time its poll started)
        self._pending: dict[int, tuple[asyncio.Task[PollResult], float]] = {}
        self._lane_of: dict[int, int] = {}  # partition -> lane, dealt at assignment
        self._writers: list[Writer] = []  # one per lane
        self._publisher: DeltaPublisher | None = None
        self._gap_checked: dict[int, int] = {}
        self._exit_code = 0  # partition -> offset already re-seeked to
        self.readings_total = 0  # readings committed by this process
        self.first_batch_at: float | None = None  # monotonic time the first batch was polled
        self.last_batch_at: float | None = None  # monotonic time the last batch committed

    def stop(self) -> None:
        """Ask the service to drain and exit (signal handlers call this)."""
        self._stop.set()

    def health(self) -> dict[str, Any]:
        """State for ``/health``."""
        return {
            "healthy": self._healthy,
            "partitions": self._assigned,
            "seconds_since_batch": round(time.monotonic() - self._last_batch, 1),
        }

    async def run(self) -> int:
        """Consume until stopped (or idle with ``exit_when_idle_s``); 0 on a clean exit."""
        s = self.s
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        registry = load_registry(s.registry_file)
        factors = load_factors(s.factors_file)
        params = event_time_params(s)
        self._conn = await psycopg.AsyncConnection.connect(s.pg_dsn, autocommit=True)
        provider = (self._provider_factory or self._stored_baselines(registry))(self._conn)
        producer = None
        if s.publish_deltas:
            await ensure_topic(s.kafka_bootstrap, s.deltas_topic)
            producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
            )
            await producer.start()
        conn = self._conn

        async def history(ids: list[str]) -> Any:
            return await load_history(
                conn, ids, params=params, margin_ms=s.rehydrate_margin_s * 1000
            )

        try:
            async with contextlib.AsyncExitStack() as stack:
                self._writers = [
                    await stack.enter_async_context(Writer(dsn=s.pg_dsn))
                    for _ in range(s.writer_lanes)
                ]
                writer = self._writers[0]  # lane 0 also commits the idle timer's windows
                self._proc = BatchProcessor(
                    writer=writer,
                    provider=provider,
                    registry=registry,
                    factors=factors,
                    params=params,
                    topic=s.readings_topic,
                    group=s.group_id,
                    history=history,
                    dead_letter_max_bytes=s.dead_letter_max_bytes,
                    deltas=producer is not None,
                )
                publisher = (
                    DeltaPublisher(producer=producer, topic=s.deltas_topic) if producer else None
                )
                return await self._serve(publisher)
        finally:
            if producer is not None:
                await producer.stop()
            await self._conn.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _stored_baselines(self, registry: Any) -> ProviderFactory:
        return lambda conn: StoredBaselines(
            conn=conn,
            registry=registry,
            baseline_days=self.s.baseline_days,
            hourly_min_days=self.s.baseline_hourly_min_days,
            refresh_s=self.s.baseline_refresh_s,
            lateness_ms=self.s.allowed_lateness_s * 1000,
            wait_s=self.s.baseline_wait_s,
        )

    async def _serve(self, publisher: DeltaPublisher | None) -> int:
        s = self.s
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=s.fetch_max_bytes,
            max_partition_fetch_bytes=s.partition_fetch_bytes,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(500, s.session_timeout_ms // 4),
        )
        self._consumer = consumer
        consumer.subscribe([s.readings_topic], listener=_Listener(self))
        await consumer.start()
        server = (
            await serve_http(s.metrics_port, self.metrics, self.health) if s.metrics_port else None
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._consume(consumer, publisher), name="consume")
            return self._exit_code
        finally:
            if server is not None:
                server.close()
            await consumer.stop()
            self._healthy = False

    async def _consume(self, consumer: AIOKafkaConsumer, publisher: DeltaPublisher | None) -> None:
        try:
            await self._consume_until_done(consumer, publisher)
        except StaleGeneration as exc:  # a newer member owns our partitions: we are a zombie
            log.error("fenced", error=str(exc))
            self._exit_code = 1
        finally:
            await self._abandon()

    async def _consume_until_done(
        self, consumer: AIOKafkaConsumer, publisher: DeltaPublisher | None
    ) -> None:
        s, proc = self.s, self._proc
        assert proc is not None
        self._publisher = publisher
        last_record = last_idle = time.monotonic()
        while not self._stop.is_set():
            free = await self._free_lanes()
            epoch = self._epoch
            polled = await self._poll(consumer, free)
            started = time.monotonic()
            self._healthy = True
            async with self._lock:
                if polled and epoch != self._epoch:
                    # a rebalance ran inside getmany: drop the batch, but the consumer's position
                    # is past it now; seek back, or a partition's last records would never come
                    self._refetch(consumer, polled)
                elif polled:
                    last_record = started
                    records = {
                        tp.partition: [Record(m.offset, m.key, m.value, m.timestamp) for m in msgs]
                        for tp, msgs in polled.items()
                        if tp.topic == s.readings_topic and self._contiguous(consumer, tp, msgs)
                    }
                    self.times.polls += 1
                    for lane, part in self._by_lane(records).items():
                        if proc.pending_baselines():  # a release may rewrite any lane's windows:
                            await self._flush()  # their earlier versions must land first
                        t0 = time.monotonic()
                        prepared = await proc.prepare(part, now_ms=_now_ms())
                        t_prepared = time.monotonic()
                        await self._flush(lane)  # a lane's commits stay in order
                        self.times.prepare_s.append(t_prepared - t0)
                        self.times.wait_s.append(time.monotonic() - t_prepared)
                        if prepared is not None:  # committed while the next lane is prepared
                            task = asyncio.create_task(
                                self._timed_commit(prepared, lane), name=f"commit-{lane}"
                            )
                            self._pending[lane] = (task, started)
                if started - last_idle >= s.idle_check_s:
                    last_idle = started
                    idle = await proc.prepare_idle(now_ms=_now_ms(), idle_ms=s.idle_close_s * 1000)
                    if idle is not None:  # usually nothing closes: the lanes keep overlapping
                        await self._flush()  # the idle commit comes after every earlier one
                        await self._after(await proc.commit(idle), started)
            self.times.maybe_log(log)
            lag = await self._update_lag(consumer)
            quiet = started - max(last_record, self._rebalanced) >= s.exit_when_idle_s
            if s.exit_when_idle_s and lag == 0 and quiet:
                async with self._lock:
                    await self._flush()
                    await self._after(await proc.close_idle(now_ms=_now_ms(), idle_ms=0), started)
                if proc.pending_baselines():
                    continue  # windows waiting for a baseline: retried each poll (bounded wait)
                span = (self.last_batch_at or 0.0) - (self.first_batch_at or 0.0)
                log.info(
                    "exit_when_idle",
                    idle_s=round(started - last_record, 1),
                    readings=self.readings_total,
                    busy_span_s=round(span, 3),
                )
                return
        async with self._lock:
            await asyncio.wait_for(self._flush(), s.drain_timeout_s)
        log.info("drained", partitions=self._assigned, readings=self.readings_total)

    async def _free_lanes(self) -> set[int]:
        """Lanes with no commit in flight; when several lanes are all busy, waits for the first."""
        lanes = len(self._writers)
        busy = {n: task for n, (task, _) in self._pending.items() if not task.done()}
        if lanes > 1 and len(busy) == lanes:
            await asyncio.wait(busy.values(), return_when=asyncio.FIRST_COMPLETED)
            busy = {n: task for n, task in busy.items() if not task.done()}
        return set(range(lanes)) - set(busy)

    async def _poll(
        self, consumer: AIOKafkaConsumer, free: set[int]
    ) -> dict[TopicPartition, list[Any]]:
        """The next records, those already fetched for the free lanes' partitions first.

        Fetched records are handed out a partition at a time (up to ``partition_fetch_bytes``
        each), so an unrestricted poll may return mostly one lane's partitions; polled again
        while that lane commits, it could return the same lane,
        whose commit the next one must wait for, while the other connection idles. With nothing
        fetched for a free lane, every partition is polled (a busy lane's records are then
        prepared while it commits).
        """
        s = self.s
        if free and len(free) < len(self._writers):
            mine = [
                TopicPartition(s.readings_topic, p) for p, n in self._lane_of.items() if n in free
            ]
            if mine:
                polled = await consumer.getmany(*mine, timeout_ms=0, max_records=s.poll_max_records)
                if polled:
                    return polled  # type: ignore[no-any-return]
        return await consumer.getmany(  # type: ignore[no-any-return]
            timeout_ms=s.poll_timeout_ms, max_records=s.poll_max_records
        )

    def _refetch(self, consumer: AIOKafkaConsumer, polled: dict[TopicPartition, Any]) -> None:
        """Seek the polled partitions still assigned back to their next offset to process."""
        assert self._proc is not None
        for tp in polled:
            expected = self._proc.next_offsets.get(tp.partition)
            if expected is not None:
                consumer.seek(tp, expected)
        log.info("refetch_after_rebalance", partitions=sorted(tp.partition for tp in polled))

    def _contiguous(self, consumer: AIOKafkaConsumer, tp: TopicPartition, msgs: list[Any]) -> bool:
        """False (and seek back) when a fetch starts past the next offset to process.

        A fetch made before a rebalance can survive the seek to the stored offsets; processing
        it would skip records. The first time a gap shows, the consumer seeks back and the
        records are dropped; a gap seen again from the same offset is real (e.g. transaction
        markers) and accepted.
        """
        assert self._proc is not None
        expected = self._proc.next_offsets.get(tp.partition)
        if expected is None or not msgs or msgs[0].offset <= expected:
            return True
        if self._gap_checked.get(tp.partition) == expected:
            return True
        self._gap_checked[tp.partition] = expected
        log.warning(
            "fetch_gap_reseek", partition=tp.partition, expected=expected, got=msgs[0].offset
        )
        consumer.seek(tp, expected)
        return False

    def _by_lane(self, records: dict[int, list[Record]]) -> dict[int, dict[int, list[Record]]]:
        lanes: dict[int, dict[int, list[Record]]] = {}
        for partition, recs in records.items():
            lanes.setdefault(self._lane_of.get(partition, 0), {})[partition] = recs
        return dict(sorted(lanes.items()))

    async def _timed_commit(self, prepared: Prepared, lane: int) -> PollResult:
        assert self._proc is not None
        t = time.monotonic()
        result = await self._proc.commit(prepared, writer=self._writers[lane])
        self.times.commit_s.append(time.monotonic() - t)
        self.times.readings += result.readings
        return result

    async def _flush(self, lane: int | None = None) -> None:
        """Wait for the lane's commit in flight, or every lane's (None).

        A failed commit raises and ends the service; the other lanes' commits are cancelled
        (rolled back) by :meth:`_abandon`, and every partition restarts from its stored offsets.
        """
        for n in sorted(self._pending) if lane is None else [lane]:
            pending = self._pending.pop(n, None)
            if pending is not None:
                task, started = pending
                await self._after(await task, started)

    async def _abandon(self) -> None:
        """Cancel the commits still in flight (the service is failing or fenced)."""
        pending, self._pending = self._pending, {}
        for task, _ in pending.values():
            task.cancel()
        await asyncio.gather(*(t for t, _ in pending.values()), return_exceptions=True)

    async def _after(self, result: PollResult, started: float) -> None:
        if result.commit is None:
            return
        self._last_batch = time.monotonic()
        if result.readings:
            self.readings_total += result.readings
            self.first_batch_at = self.first_batch_at or started
            self.last_batch_at = self._last_batch
        self.metrics.observe_batch(result.readings, result.records, self._last_batch - started)
        self.metrics.windows.inc(result.windows)
        for reason, n in result.rejected.items():
            self.metrics.rejections.labels(reason).inc(n)
        if self._publisher is not None and result.deltas:
            self.metrics.deltas.inc(await self._publisher.publish(result.deltas))

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> int | None:
        """Total lag of the assigned partitions; None while a log end is unknown."""
        total = 0
        for p in list(self._assigned):
            tp = TopicPartition(self.s.readings_topic, p)
            end = consumer.highwater(tp)
            if end is None:
                return None
            try:
                pos = await consumer.position(tp)
            except Exception:  # partition revoked meanwhile: lag unknown
                return None
            self.metrics.lag.labels(str(p)).set(max(0, end - pos))
            total += max(0, end - pos)
        return total

    async def revoked(self, partitions: list[int]) -> None:
        """Rebalance: wait for the batch in flight to commit, then drop the states."""
        async with self._lock:
            await self._flush()
            if self._proc is not None:
                self._proc.revoke(partitions)
            self._assigned = [p for p in self._assigned if p not in partitions]
            self._rebalanced = time.monotonic()
            log.info("partitions_revoked", partitions=partitions)

    async def assigned(self, partitions: list[int]) -> None:
        """Rebalance: claim (fence older owners), seek to the stored offsets, start empty states."""
        async with self._lock:
            assert self._conn is not None
            assert self._consumer is not None
            assert self._proc is not None
            await self._flush()  # lanes are dealt anew below: nothing may be in flight
            self._epoch += 1
            claim = await claim_partitions(
                self._conn,
                group=self.s.group_id,
                topic=self.s.readings_topic,
                partitions=partitions,
            )
            tps = {p: TopicPartition(self.s.readings_topic, p) for p in partitions}
            fresh = [tp for p, tp in tps.items() if p not in claim.offsets]
            # an explicit position: seek_to_beginning resets lazily and may redeliver a fetch
            starts = await self._consumer.beginning_offsets(fresh) if fresh else {}
            for p, tp in tps.items():
                self._consumer.seek(tp, claim.offsets[p] if p in claim.offsets else starts[tp])
            self._proc.assign(
                partitions,
                claim.generation,
                {p: claim.offsets.get(p, starts.get(tps[p], 0)) for p in partitions},
            )
            self._assigned = sorted(partitions)
            lanes = max(1, len(self._writers))
            self._lane_of = {p: i % lanes for i, p in enumerate(self._assigned)}
            self._rebalanced = time.monotonic()
            n_partitions = len(self._consumer.partitions_for_topic(self.s.readings_topic) or ())
            preloaded = 0
            if n_partitions and partitions:
                recent = await recent_devices(
                    self._conn,
                    partitions=partitions,
                    n_partitions=n_partitions,
                    recent_ms=self.s.rehydrate_recent_s * 1000,
                )
                preloaded = await self._proc.preload(recent, now_ms=_now_ms())
            log.info(
                "partitions_assigned",
                partitions=partitions,
                generation=claim.generation,
                stored=len(claim.offsets),
                preloaded=preloaded,
            )


async def ensure_topic(bootstrap: str, topic: str, partitions: int = 6) -> None:
    """Create ``topic`` (replication 1, the local stack) when the broker does not have it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, partitions, 1)])
            log.info("topic_created", topic=topic, partitions=partitions)
    except TopicAlreadyExistsError:
        pass  # another member created it meanwhile
    finally:
        await admin.close()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def run_processor(settings: ProcessorSettings) -> int:
    """Run one processor until SIGTERM (or idle); returns the exit code."""
    return await ProcessorService(settings).run()
