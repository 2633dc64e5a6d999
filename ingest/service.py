"""Start-up and shutdown of one gateway process: build everything from the settings, run, drain.

SIGTERM / SIGINT stop taking messages; in-flight batches are delivered (or spooled), their MQTT
acks sent, the producer flushed and the spool closed, all within ``drain_timeout_s``. Whatever is
not acked by then is redelivered by the broker to the next session (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiokafka.errors import KafkaError

from ingest.batch import Builder
from ingest.gateway import Gateway, Tuning
from ingest.metrics import GatewayMetrics, serve_http
from ingest.mqtt_source import Inbox, MqttConfig, MqttSource
from ingest.producer import KafkaSink, Sink, ensure_topics
from ingest.settings import GatewaySettings
from ingest.spool import Spool
from ingest.validate import Limits
from pilotstream.errors import ServiceUnavailable
from pilotstream.logs import get_logger
from pilotstream.registry import load_registry

_log = get_logger(__name__)


def make_builder(s: GatewaySettings) -> Builder:
    """The message -> records builder for these settings."""
    return Builder(
        registry=load_registry(s.registry_file),
        gateway_id=s.gateway_id,
        readings_topic=s.readings_topic,
        rejected_topic=s.rejected_topic,
        limits=Limits(future_skew_ms=s.future_skew_s * 1000, horizon_ms=s.horizon_s * 1000),
        max_payload_bytes=s.max_payload_bytes,
        max_depth=s.max_depth,
        dead_letter_max_bytes=s.dead_letter_max_bytes,
    )


async def run_gateway(s: GatewaySettings, *, sink: Sink | None = None) -> int:
    """Run a gateway until SIGTERM/SIGINT or ``max_messages``; returns the exit code."""
    loop = asyncio.get_running_loop()
    metrics = GatewayMetrics()
    spool = Spool(
        path=s.spool_path,
        max_bytes=s.spool_max_bytes,
        segment_bytes=s.spool_segment_bytes,
        fsync=s.spool_fsync,
        fsync_interval_ms=s.spool_fsync_interval_ms,
    )
    sink = sink or KafkaSink(
        bootstrap=s.kafka_bootstrap,
        client_id=s.gateway_id,
        linger_ms=s.kafka_linger_ms,
        max_batch_bytes=s.kafka_max_batch_bytes,
        compression=s.kafka_compression,
    )
    producer_ok = await _start_sink(s, sink)
    inbox = Inbox(loop)
    gw: Gateway

    def on_state(up: bool) -> None:  # network thread
        loop.call_soon_threadsafe(_set_mqtt, gw, metrics, up)

    source = MqttSource(
        config=MqttConfig(
            host=s.mqtt_host,
            port=s.mqtt_port,
            user=s.mqtt_gateway_user,
            password=s.mqtt_gateway_password,
            client_id=s.gateway_id,
            subscription=s.mqtt_subscription,
            session_expiry_s=s.mqtt_session_expiry_s,
            receive_maximum=s.mqtt_receive_maximum,
            keepalive_s=s.mqtt_keepalive_s,
            max_buffered=2 * s.mqtt_receive_maximum,
        ),
        inbox=inbox,
        on_state=on_state,
    )
    gw = Gateway(
        builder=make_builder(s),
        sink=sink,
        spool=spool,
        inbox=inbox,
        ack=source.ack,
        metrics=metrics,
        tuning=Tuning(
            batch_size=s.batch_size,
            linger_s=s.batch_linger_ms / 1000,
            max_inflight_batches=s.max_inflight_batches,
            produce_timeout_s=s.produce_timeout_s,
            overflow=s.spool_overflow,
            max_messages=s.max_messages,
        ),
    )
    if not producer_ok:
        gw.kafka_ok = gw.producer_ok = False
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gw.stop)
    server = await serve_http(s.metrics_port, metrics, gw.health) if s.metrics_port else None
    _log.info("gateway_started", gateway_id=s.gateway_id, spooled=spool.depth, kafka=producer_ok)
    source.start()
    try:
        await gw.run()
    finally:
        await _shutdown(s=s, gw=gw, source=source, sink=sink, spool=spool, server=server)
    return 0


async def _start_sink(s: GatewaySettings, sink: Sink) -> bool:
    try:
        if isinstance(sink, KafkaSink):
            async with asyncio.timeout(10):
                await ensure_topics(s.kafka_bootstrap, [s.readings_topic, s.rejected_topic])
        await sink.start()
    except (ServiceUnavailable, TimeoutError, OSError) as exc:
        _log.warning("kafka_unreachable_at_start", error=repr(exc))
        return False
    except KafkaError as exc:  # admin errors: spool until it comes back
        _log.warning("kafka_unreachable_at_start", error=repr(exc))
        return False
    return True


def _set_mqtt(gw: Gateway, metrics: GatewayMetrics, up: bool) -> None:
    gw.mqtt_ok = up
    metrics.mqtt_up.set(1 if up else 0)


async def _shutdown(
    *,
    s: GatewaySettings,
    gw: Gateway,
    source: MqttSource,
    sink: Sink,
    spool: Spool,
    server: asyncio.Server | None,
) -> None:
    _log.info("gateway_stopping", acked=gw.acked, spooled=spool.depth)
    await asyncio.to_thread(source.stop, min(5.0, s.drain_timeout_s))
    with contextlib.suppress(Exception):
        async with asyncio.timeout(max(1.0, s.drain_timeout_s / 2)):
            await sink.stop()
    spool.close()
    if server is not None:
        server.close()
    busy_s = max(gw.last_acked_at - gw.first_received_at, 0.0)
    _log.info("gateway_stopped", acked=gw.acked, spooled=spool.depth, busy_s=round(busy_s, 4))
