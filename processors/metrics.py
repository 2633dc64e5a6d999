"""Prometheus metrics of one processor and its ``/metrics`` + ``/health`` endpoint (127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pilotstream.ops_http import serve_ops


@dataclass
class BatchTimes:
    """Where the time of the last polls went, logged as one ``batch_times`` line per period."""

    period_s: float = 10.0  # how often :meth:`maybe_log` emits
    polls: int = 0
    readings: int = 0
    prepare_s: list[float] = field(default_factory=list)  # decode + kernels + scoring, per poll
    wait_s: list[float] = field(default_factory=list)  # waiting for the previous commit
    commit_s: list[float] = field(default_factory=list)  # one transaction, per poll
    since: float = field(default_factory=time.monotonic)

    def maybe_log(self, log: Any) -> None:
        """Emit the period's counts, sums and maxima, then start a new period."""
        now = time.monotonic()
        if now - self.since < self.period_s or not self.polls:
            return
        log.info(
            "batch_times",
            polls=self.polls,
            readings=self.readings,
            seconds=round(now - self.since, 1),
            **{
                f"{name}_{agg}": round(fn(values), 3) if values else 0.0
                for name, values in (
                    ("prepare_s", self.prepare_s),
                    ("wait_s", self.wait_s),
                    ("commit_s", self.commit_s),
                )
                for agg, fn in (("sum", sum), ("max", max))
            },
        )
        self.polls = self.readings = 0
        self.prepare_s, self.wait_s, self.commit_s = [], [], []
        self.since = now


class ProcessorMetrics:
    """Lag, batch size, batch latency, readings/s and rejections by reason."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.lag = Gauge("processor_lag", "records behind the log end", ["partition"], registry=r)
        self.batch_records = Histogram(
            "processor_batch_records",
            "Kafka records per committed batch",
            buckets=(1, 10, 100, 1000, 5000, 20000, 50000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "processor_batch_seconds",
            "poll -> committed transaction",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.readings = Counter("processor_readings", "readings decoded", registry=r)
        self.readings_per_s = Gauge(
            "processor_readings_per_s", "readings per second over the last batches", registry=r
        )
        self.windows = Counter("processor_windows", "windows closed or restated", registry=r)
        self.rejections = Counter(
            "processor_rejections", "refused readings by reason", ["reason"], registry=r
        )
        self.deltas = Counter("processor_deltas_published", "window deltas published", registry=r)
        self._rate_t = time.monotonic()
        self._rate_n = 0

    def observe_batch(self, readings: int, records: int, seconds: float) -> None:
        """Record one committed batch."""
        self.readings.inc(readings)
        self.batch_records.observe(records)
        self.batch_seconds.observe(seconds)
        self._rate_n += readings
        elapsed = time.monotonic() - self._rate_t
        if elapsed >= 1.0:
            self.readings_per_s.set(self._rate_n / elapsed)
            self._rate_t, self._rate_n = time.monotonic(), 0

    def render(self) -> bytes:
        """Prometheus text format."""
        return generate_latest(self.registry)


async def serve_http(
    port: int, metrics: ProcessorMetrics, health: Callable[[], dict[str, Any]]
) -> asyncio.Server:
    """Serve ``GET /metrics`` and ``GET /health`` on 127.0.0.1 (see pilotstream.ops_http)."""
    return await serve_ops(port, metrics.render, health)
