"""Fakes of the gateway's I/O contracts, for unit tests (fixture ``fake_sink``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ingest.producer import Sink
from ingest.spool import Record
from pilotstream.errors import ServiceUnavailable


class FakeSink(Sink):
    """Collects records; ``down`` makes every call fail like an unreachable cluster."""

    def __init__(self) -> None:
        self.sent: list[Record] = []
        self.down = False
        self.starts = 0
        self.delay_s = 0.0

    async def start(self) -> None:
        if self.down:
            msg = "fake cluster down"
            raise ServiceUnavailable(msg)
        self.starts += 1

    async def send(self, records: Sequence[Record]) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            msg = "fake cluster down"
            raise ServiceUnavailable(msg)
        self.sent.extend(records)

    async def stop(self) -> None:
        return None


@pytest.fixture
def fake_sink() -> FakeSink:
    """A working fake Kafka; set ``.down = True`` to cut it."""
    return FakeSink()
