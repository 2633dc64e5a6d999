"""The whole pipeline on the local stack, isolated per run: its own database, Kafka topics and MQTT
share group; the gateway and the processors run as child processes (as in production), the
dead-letter sink as a task of this process. Used by the demo, the end-to-end tests and the pipeline
benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pilotstream import topics
from pilotstream.settings import BaseSettings

Say = Callable[[str], None]


@dataclass(frozen=True)
class PipelineRun:
    """Names that keep one run apart from every other user of the stack."""

    name: str  # e.g. "demo" or "e2e-1a2b"
    database: str  # fresh database, migrated
    readings_topic: str
    rejected_topic: str
    deltas_topic: str
    share_group: str  # MQTT shared-subscription group of this run's gateways
    processor_group: str  # Kafka consumer group of this run's processors
    dead_letter_group: str
    gateway_metrics_port: int
    partitions: int = 6

    @classmethod
    def named(cls, name: str, *, metrics_port: int = 19300) -> PipelineRun:
        """A run whose every name derives from ``name`` (lower case letters, digits, dashes)."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", name):
            msg = f"run name {name!r}: use lower-case letters, digits and dashes"
            raise ValueError(msg)
        slug = name.replace("-", "_")
        prefix = "" if name == "demo" else f"{name}."
        return cls(
            name=name,
            database=f"pilotstream_{slug}",
            readings_topic=prefix + topics.READINGS,
            rejected_topic=prefix + topics.REJECTED,
            deltas_topic=prefix + topics.DELTAS,
            share_group=f"gw-{name}",
            processor_group=f"processors-{name}",
            dead_letter_group=f"dead-letters-{name}",
            gateway_metrics_port=metrics_port,
        )

    def dsn(self, settings: BaseSettings) -> str:
        """Connection string of the run's database."""
        return make_conninfo(settings.pg_dsn, dbname=self.database)


def prepare(settings: BaseSettings, run: PipelineRun, say: Say) -> None:
    """Fresh database (dropped if it exists, then migrated and seeded) and fresh topics."""
    from storage.setup import setup_database

    with psycopg.connect(settings.pg_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(run.database))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(run.database)))
    with psycopg.connect(run.dsn(settings), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    report = setup_database(run.dsn(settings))
    say(
        f"database {run.database}: {len(report.applied)} migrations, {report.pilots} pilots, {report.factors} factors"
    )
    asyncio.run(_recreate_topics(settings, run))
    say(
        f"topics {run.readings_topic}, {run.rejected_topic}, {run.deltas_topic}: fresh, {run.partitions} partitions"
    )


async def _recreate_topics(settings: BaseSettings, run: PipelineRun) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = [run.readings_topic, run.rejected_topic, run.deltas_topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics()) & set(names)
        if existing:
            await admin.delete_topics(sorted(existing))
            for _ in range(100):  # deletion is asynchronous in the broker
                if not set(await admin.list_topics()) & existing:
                    break
                await asyncio.sleep(0.2)
        await admin.create_topics(
            [NewTopic(n, num_partitions=run.partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


@dataclass
class Child:
    """A service this run started, by pid."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (the services drain and exit), SIGKILL after the timeout; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@dataclass
class LocalPipeline:
    """Gateway(s), processors and the dead-letter sink of one run."""

    settings: BaseSettings
    run: PipelineRun
    log_dir: Path
    children: list[Child] = field(default_factory=list)
    # A shared subscription hands messages to every member session, even an offline one left by an
    # earlier start of the same run (it queues its share until it expires): one group per start.
    share_token: str = field(default_factory=lambda: secrets.token_hex(3))
    _sink_stop: threading.Event = field(default_factory=threading.Event)
    _sink_thread: threading.Thread | None = None

    def _spawn(self, name: str, args: list[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        env = {**os.environ, "PILOTSTREAM_PG_DATABASE": self.run.database}
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pilotstream.cli", *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def start_gateway(self, *, gateway_id: str = "gw-1", extra: list[str] | None = None) -> Child:
        """One gateway subscribed to ``pilots/#`` in this run's share group."""
        return self._spawn(
            gateway_id,
            [
                "gateway",
                "--gateway-id", f"{self.run.name}-{gateway_id}-{secrets.token_hex(3)}",
                # a run's session must not outlive it by long: it queues every pilot's messages
                "--mqtt-session-expiry-s", "300",
                "--mqtt-subscription", f"$share/{self.run.share_group}-{self.share_token}/{topics.MQTT_ROOT}/#",
                "--readings-topic", self.run.readings_topic,
                "--rejected-topic", self.run.rejected_topic,
                "--metrics-port", str(self.run.gateway_metrics_port),
                "--spool-dir", str(self.log_dir / f"spool-{gateway_id}"),
                *(extra or []),
            ],
        )  # fmt: skip

    def start_processor(self, n: int, *, extra: list[str] | None = None) -> Child:
        """Processor ``n`` of this run's consumer group."""
        return self._spawn(f"processor-{n}", ["process", *processor_args(self.run), *(extra or [])])

    def start_dead_letter_sink(self) -> None:
        """Gateway rejections into this run's database, in a thread of this process."""
        from processors.dead_letters import DeadLetterSinkConfig, run_dead_letter_sink

        cfg = DeadLetterSinkConfig(
            bootstrap=self.settings.kafka_bootstrap,
            dsn=self.run.dsn(self.settings),
            topic=self.run.rejected_topic,
            group=self.run.dead_letter_group,
        )

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(run_dead_letter_sink(cfg, stop))
            waiter = asyncio.ensure_future(asyncio.to_thread(self._sink_stop.wait))
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            self._sink_stop.set()  # lets the waiter thread end if the sink ended first
            await task

        self._sink_thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="dead-letter-sink"
        )
        self._sink_thread.start()

    def gateway_metric(self, name: str) -> float:
        """Sum of a Prometheus metric of the gateway (0 when it is not exposed yet)."""
        url = f"http://127.0.0.1:{self.run.gateway_metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] == name:
                    total += float(value)
        return total

    def stop(self) -> None:
        """Stop everything this run started, processors last so they commit what they hold."""
        for child in sorted(self.children, key=lambda c: c.name.startswith("processor")):
            child.stop()
        self._sink_stop.set()
        if self._sink_thread is not None:
            self._sink_thread.join(30)

    def __enter__(self) -> LocalPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def processor_args(run: PipelineRun) -> list[str]:
    """Command-line flags that point a processor at this run."""
    return [
        "--readings-topic",
        run.readings_topic,
        "--group-id",
        run.processor_group,
        "--deltas-topic",
        run.deltas_topic,
    ]


async def stored_offsets(dsn: str, group: str, topic: str) -> dict[int, int]:
    """Next offsets a group has committed with its results."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = %s AND topic = %s "
            "AND next_offset IS NOT NULL",
            (group, topic),
        )
        return {int(p): int(o) for p, o in await cur.fetchall()}


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Log-end offsets of a topic's partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def lag(settings: BaseSettings, run: PipelineRun) -> tuple[int, int]:
    """(processor lag, dead-letter lag) in records, from Kafka end offsets and the stored offsets."""
    dsn = run.dsn(settings)
    out = []
    for topic, group in (
        (run.readings_topic, run.processor_group),
        (run.rejected_topic, run.dead_letter_group),
    ):
        ends = await end_offsets(settings.kafka_bootstrap, topic)
        done = await stored_offsets(dsn, group, topic)
        out.append(sum(max(0, end - done.get(p, 0)) for p, end in ends.items()))
    return out[0], out[1]


def wait_until(check: Callable[[], bool], *, timeout_s: float, every_s: float = 0.5) -> bool:
    """Poll ``check`` until true or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()
