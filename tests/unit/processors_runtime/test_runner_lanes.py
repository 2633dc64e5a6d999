"""The runner polls the lanes with no commit in flight first, so both connections keep working."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from processors.runner import ProcessorService
from processors.settings import ProcessorSettings

TOPIC = "pilotstream.readings.v1"


class FakeConsumer:
    """getmany over records already fetched, per partition; remembers what each call asked for."""

    def __init__(self, fetched: dict[int, list[str]]):
        self.fetched = fetched
        self.calls: list[tuple[list[int], int]] = []  # (partitions asked, 0 = all; timeout_ms)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[str]]:
        self.calls.append(([tp.partition for tp in partitions], timeout_ms))
        wanted = {tp.partition for tp in partitions} or set(self.fetched)
        return {
            TopicPartition(TOPIC, p): recs
            for p, recs in self.fetched.items()
            if p in wanted and recs
        }


def _service(lanes: int) -> ProcessorService:
    service = ProcessorService(
        ProcessorSettings.load(env={}, overrides={"writer_lanes": lanes, "readings_topic": TOPIC})
    )
    service._writers = [object() for _ in range(lanes)]  # type: ignore[misc]
    service._lane_of = {p: p % lanes for p in range(6)}
    return service


async def _never() -> Any:
    await asyncio.Event().wait()


def _busy(service: ProcessorService, lane: int) -> asyncio.Task[Any]:
    task = asyncio.get_running_loop().create_task(_never())
    service._pending[lane] = (task, 0.0)
    return task


async def test_a_poll_while_a_lane_commits_asks_for_the_free_lanes_records() -> None:
    service = _service(2)
    busy = _busy(service, 0)
    consumer = FakeConsumer({0: ["a"], 1: ["b"], 2: ["c"], 3: ["d"]})
    free = await service._free_lanes()
    polled = await service._poll(consumer, free)
    assert free == {1}
    # lane 1 holds the odd partitions; nothing of the busy lane 0 comes back
    assert sorted(tp.partition for tp in polled) == [1, 3]
    assert consumer.calls == [([1, 3, 5], 0)]
    busy.cancel()


async def test_with_nothing_fetched_for_the_free_lane_every_partition_is_polled() -> None:
    service = _service(2)
    busy = _busy(service, 0)
    consumer = FakeConsumer({0: ["a"], 2: ["c"]})
    polled = await service._poll(consumer, await service._free_lanes())
    assert sorted(tp.partition for tp in polled) == [0, 2]
    assert consumer.calls == [([1, 3, 5], 0), ([], service.s.poll_timeout_ms)]
    busy.cancel()


async def test_with_every_lane_busy_the_poll_waits_for_the_first_commit() -> None:
    service = _service(2)
    slow = _busy(service, 0)
    done = asyncio.Event()

    async def commit() -> Any:
        await done.wait()

    service._pending[1] = (asyncio.get_running_loop().create_task(commit()), 0.0)
    waiting = asyncio.get_running_loop().create_task(service._free_lanes())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # both lanes are committing
    done.set()
    assert await asyncio.wait_for(waiting, 1.0) == {1}
    slow.cancel()


async def test_one_lane_polls_everything_while_it_commits() -> None:
    service = _service(1)
    busy = _busy(service, 0)
    consumer = FakeConsumer({0: ["a"], 1: ["b"]})
    free = await asyncio.wait_for(service._free_lanes(), 1.0)  # does not wait for the commit
    polled = await service._poll(consumer, free)
    assert free == set()
    assert sorted(tp.partition for tp in polled) == [0, 1]
    assert consumer.calls == [([], service.s.poll_timeout_ms)]
    busy.cancel()
