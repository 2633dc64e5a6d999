"""The runner seeks back over a batch it drops because a rebalance ran inside ``getmany``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from processors.runner import ProcessorService
from processors.settings import ProcessorSettings


def test_a_batch_dropped_at_a_rebalance_is_fetched_again() -> None:
    service = ProcessorService(ProcessorSettings.load(env={}))
    # partitions 1 and 3 are ours after the rebalance, 5 went to another member
    service._proc = SimpleNamespace(next_offsets={1: 40, 3: 7})  # type: ignore[assignment]
    seeks: list[tuple[int, int]] = []
    consumer: Any = SimpleNamespace(seek=lambda tp, offset: seeks.append((tp.partition, offset)))
    polled = {TopicPartition("readings", p): [object()] for p in (1, 3, 5)}
    service._refetch(consumer, polled)
    # without the seek the consumer's position stays past the dropped records: a partition's
    # last records would never come again
    assert sorted(seeks) == [(1, 40), (3, 7)]
