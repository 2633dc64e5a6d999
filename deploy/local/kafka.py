"""Apache Kafka 4.x, single node in KRaft combined mode, from its Maven Central jars."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from deploy.local import install, procs
from deploy.local.base import HERE, Service, ServiceError, render
from pilotstream import topics

# partitions per topic: readings are keyed by device and spread over consumers
TOPIC_PARTITIONS = {topics.READINGS: 6, topics.REJECTED: 3, topics.DELTAS: 3}


def new_cluster_id() -> str:
    """A random cluster id as Kafka writes them: url-safe base64 of a UUID, unpadded.

    Kafka's own generator never returns one starting with "-": the storage tool's argument
    parser would read it as an option ("--cluster-id: expected one argument"), which failed
    one CI run in 64 or so. Draw again until the first character is safe.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Service):
    """Kafka broker + controller on 127.0.0.1, heap capped, storage formatted once."""

    name = "kafka"

    @property
    def log_path(self) -> Path:
        return self.layout.run / "kafka.stdout"

    @property
    def marker(self) -> str:
        return str(self.dir / "server.properties")

    @property
    def libs(self) -> Path:
        return self.layout.cache / "kafka-libs"

    def prepare(self) -> None:
        if self.settings.install:
            install.ensure_kafka_jars(HERE / "pom.xml", self.layout.cache, self.libs, self.say)
        if not any(self.libs.glob("kafka_2.13-*.jar")):
            msg = f"Kafka jars missing in {self.libs}; run `pilotstream stack up` with install on"
            raise ServiceError(msg)
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        s = self.settings
        render(
            "server.properties.tmpl",
            self.dir / "server.properties",
            port=s.kafka_port,
            controller_port=s.kafka_controller_port,
            data_dir=data,
        )
        if not (data / "meta.properties").exists():
            cluster_id = new_cluster_id()
            proc = subprocess.run(
                [*self._java(256), "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(self.dir / "server.properties")],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise ServiceError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")

    def _java(self, heap_mb: int) -> list[str]:
        java = shutil.which("java") or "java"
        return [
            java,
            f"-Xmx{heap_mb}m",
            f"-Xms{min(heap_mb, 256)}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={HERE / 'log4j2.yaml'}",
            "-cp",
            f"{self.libs}/*",
        ]

    def start(self) -> None:
        procs.spawn(
            [
                *self._java(self.settings.kafka_heap_mb),
                "kafka.Kafka",
                str(self.dir / "server.properties"),
            ],
            log=self.log_path,
            pid_file=self.pid_file,
        )

    def check(self) -> str:
        return asyncio.run(self._metadata())

    async def _metadata(self) -> str:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap, request_timeout_ms=5000
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
        except Exception as exc:
            raise ServiceError(f"no metadata: {exc!r}") from exc
        finally:
            await admin.close()
        brokers = cluster.get("brokers", [])
        if not brokers:
            raise ServiceError("metadata lists no broker")
        return f"metadata ok: {len(brokers)} broker, cluster {cluster.get('cluster_id')}"

    def after_start(self) -> str:
        """Create the pipeline's topics if missing."""
        created = asyncio.run(self._ensure_topics())
        return f"created topics {', '.join(created)}" if created else ""

    async def _ensure_topics(self) -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            new = [
                NewTopic(name, num_partitions=n, replication_factor=1)
                for name, n in TOPIC_PARTITIONS.items()
                if name not in existing
            ]
            if new:
                await admin.create_topics(new)
            return [t.name for t in new]
        finally:
            await admin.close()
