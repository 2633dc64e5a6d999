"""Helpers for the gateway's integration tests: a gateway subprocess, a pilot publisher, a Kafka
reader, and a TCP proxy in front of Kafka that the test can cut (the shared Kafka is never stopped).

Kafka advertises 127.0.0.1:{port} in its metadata, so a plain proxy would be bypassed after the
bootstrap; the proxy rewrites that address in responses to its own port (same length, so frames
keep their size).
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from ingest.mqtt_source import drop_session
from ingest.producer import ensure_topics
from pilotstream.codec import decode_batch, decode_rejection
from pilotstream.contracts import ReadingBatch, Rejection
from pilotstream.settings import BaseSettings

ROOT = Path(__file__).resolve().parents[3]


class GatewayProcess:
    """``pilotstream gateway`` as a subprocess with its own topics, share group and spool."""

    def __init__(self, settings: BaseSettings, tag: str, tmp: Path, **env: str) -> None:
        self.tag = tag
        self.readings_topic = f"{tag}.readings"
        self.rejected_topic = f"{tag}.rejected"
        self.log = tmp / f"{tag}-gateway.log"
        self.env = dict(
            os.environ,
            PILOTSTREAM_GATEWAY_ID=f"{tag}-gw",
            PILOTSTREAM_MQTT_SUBSCRIPTION=f"$share/{tag}/pilots/+/json/#",
            PILOTSTREAM_READINGS_TOPIC=self.readings_topic,
            PILOTSTREAM_REJECTED_TOPIC=self.rejected_topic,
            PILOTSTREAM_SPOOL_DIR=str(tmp / "spool"),
            PILOTSTREAM_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
            PILOTSTREAM_LOG_LEVEL="INFO",
            **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the gateway with the same id, so it resumes its MQTT session."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pilotstream.cli", "gateway"],
                env=self.env, cwd=ROOT, stdout=log, stderr=log,
            )  # fmt: skip
        self.wait_for_log("mqtt_subscribed", 20)

    def wait_for_log(self, event: str, timeout_s: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log.exists() and self.log.read_text().count(f"event={event}") >= count:
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(
                    f"gateway exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        pytest.fail(f"no {event} within {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)


@pytest.fixture
def tag() -> str:
    """A unique name for this test's topics, share group and clients."""
    return f"it{uuid.uuid4().hex[:10]}"


@pytest.fixture
def gateway(stack: BaseSettings, tag: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    """An unstarted gateway (tests may set env first); stopped at the end."""
    asyncio.run(ensure_topics(stack.kafka_bootstrap, [f"{tag}.readings", f"{tag}.rejected"]))
    gw = GatewayProcess(stack, tag, tmp_path)
    yield gw
    gw.stop()
    # the session would otherwise queue every matching message for 7 days
    drop_session(
        host=stack.mqtt_host, port=stack.mqtt_port, user=stack.mqtt_gateway_user,
        password=stack.mqtt_gateway_password, client_id=f"{tag}-gw",
    )  # fmt: skip


def publish(
    settings: BaseSettings, tenant: str, messages: Iterable[tuple[str, bytes]]
) -> list[int]:
    """Publish QoS 1 as pilot ``tenant``; returns the MQTT reason codes of the PUBACKs."""
    codes: list[int] = []
    done = threading.Event()
    pending = {"n": 0}

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, rc: mqtt.ReasonCode, _p: object) -> None:
        codes.append(rc.value)
        pending["n"] -= 1
        if pending["n"] == 0:
            done.set()

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    c.username_pw_set(tenant, settings.mqtt_pilot_password)
    c.max_inflight_messages_set(500)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    try:
        for topic, payload in messages:
            pending["n"] += 1
            c.publish(topic, payload, qos=1)
        if pending["n"]:
            assert done.wait(120), "publisher did not get every PUBACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return codes


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: int,
    timeout_s: float,
    what: str = "readings",
    prefix: str = "",
) -> list[ReadingBatch] | list[Rejection]:
    """Read ``topic`` from the start until ``until`` distinct readings (by the dedup key) or
    letters, or the timeout.

    Only devices starting with ``prefix`` count: other engineers' simulators publish under the
    same pilots' prefixes, and this test's gateway forwards those too.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=None,
    )  # fmt: skip
    out: list[ReadingBatch] | list[Rejection] = []
    seen = 0
    unique: set[tuple[str, str, int]] = set()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while seen < until and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in polled.values():
                for r in records:
                    item = (
                        decode_batch(r.value) if what == "readings" else decode_rejection(r.value)
                    )
                    if not item.device_id.startswith(prefix):
                        continue
                    out.append(item)  # type: ignore[arg-type]
                    if isinstance(item, ReadingBatch):  # distinct readings: redeliveries repeat
                        unique.update(
                            (item.device_id, m, t)
                            for m, t in zip(item.metric, item.ts_ms, strict=True)
                        )
                        seen = len(unique)
                    else:
                        seen += 1
    finally:
        await consumer.stop()
    return out


class KafkaProxy:
    """TCP proxy to Kafka that rewrites the advertised port to its own; ``cut()`` closes every
    connection and refuses new ones until ``restore()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.open = True
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        host = self.target[0].encode()
        old, new = struct.pack(">i", self.target[1]), struct.pack(">i", self.port)
        # the broker address as a classic string (int16 length) and a compact one (varint len+1)
        self._swaps = [
            (struct.pack(">h", len(host)) + host + old, struct.pack(">h", len(host)) + host + new),
            (bytes([len(host) + 1]) + host + old, bytes([len(host) + 1]) + host + new),
        ]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pump(reader, up_writer, rewrite=False),
            self._pump(up_reader, writer, rewrite=True),
            return_exceptions=True,
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, rewrite: bool
    ) -> None:
        try:
            while self.open:
                head = await reader.readexactly(4)
                frame = await reader.readexactly(struct.unpack(">i", head)[0])
                if rewrite:
                    for old, new in self._swaps:
                        frame = frame.replace(old, new)
                writer.write(head + frame)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    def cut(self) -> None:
        """Kafka becomes unreachable for everything behind this proxy."""

        def close_all() -> None:
            self.open = False
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(close_all)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "open", True)

    def close(self) -> None:
        self.cut()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def kafka_proxy(kafka_service: BaseSettings) -> Iterator[KafkaProxy]:
    """A cuttable proxy in front of the shared Kafka."""
    host, port = kafka_service.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    proxy = KafkaProxy(host, int(port))
    proxy.start()
    yield proxy
    proxy.close()


@pytest.fixture
def publisher(mqtt_service: BaseSettings):  # type: ignore[no-untyped-def]
    """``publisher(tenant, [(topic, payload), ...]) -> reason codes``."""
    return lambda tenant, messages: publish(mqtt_service, tenant, messages)


@pytest.fixture
def reader(kafka_service: BaseSettings):  # type: ignore[no-untyped-def]
    """``reader(topic, until=n, timeout_s=t, what="readings"|"letters")`` (blocking)."""
    return lambda topic, **kw: asyncio.run(read_topic(kafka_service.kafka_bootstrap, topic, **kw))
