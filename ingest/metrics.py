"""Prometheus metrics of one gateway, and a tiny HTTP endpoint: ``/metrics`` and ``/health``.

Each :class:`GatewayMetrics` has its own registry, so several gateways (tests) can live in one
process. The endpoint listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pilotstream.ops_http import serve_ops


class GatewayMetrics:
    """The gateway's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("gateway_mqtt_received", "MQTT messages received", registry=r)
        self.acked = Counter("gateway_mqtt_acked", "MQTT messages acked", registry=r)
        self.forwarded = Counter(
            "gateway_readings_forwarded", "readings acked by Kafka or spooled", registry=r
        )
        self.rejected = Counter(
            "gateway_rejected",
            "dead letters by reason and tenant",
            ["reason", "tenant"],
            registry=r,
        )
        self.unacked = Gauge("gateway_mqtt_unacked", "MQTT messages not yet acked", registry=r)
        self.spool_depth = Gauge("gateway_spool_records", "records in the spool", registry=r)
        self.spool_bytes = Gauge("gateway_spool_bytes", "bytes in the spool", registry=r)
        self.spool_full = Gauge(
            "gateway_spool_full", "1 while the spool is full (alarm)", registry=r
        )
        self.spool_dropped = Counter(
            "gateway_spool_dropped", "records dropped by overflow policy drop", registry=r
        )
        self.kafka_up = Gauge("gateway_kafka_up", "1 while Kafka accepts records", registry=r)
        self.mqtt_up = Gauge(
            "gateway_mqtt_up", "1 while connected to the broker and subscribed", registry=r
        )
        self.producer_restarts = Counter(
            "gateway_producer_restarts", "producers recreated by the watchdog", registry=r
        )
        self.produce_latency = Histogram(
            "gateway_produce_seconds",
            "time from batch submit to Kafka ack",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

    def render(self) -> bytes:
        """Prometheus text format."""
        return generate_latest(self.registry)


async def serve_http(
    port: int, metrics: GatewayMetrics, health: Callable[[], dict[str, Any]]
) -> asyncio.Server:
    """Serve ``GET /metrics`` and ``GET /health`` on 127.0.0.1 (see pilotstream.ops_http)."""
    return await serve_ops(port, metrics.render, health)
