"""Real-stack fixtures of the processor tests: a migrated database and a 6-partition topic each."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from psycopg.conninfo import conninfo_to_dict

from pilotstream.settings import BaseSettings
from storage.testing import create_temp_database, drop_database


@dataclass(frozen=True)
class Lane:
    """Where one test's processor reads and writes."""

    topic: str  # its own readings topic (6 partitions)
    group: str  # its own consumer group
    dsn: str  # its own database
    database: str  # database name (for --pg-database)
    bootstrap: str  # Kafka bootstrap servers


@pytest.fixture
def proc_dsn(pg_service: BaseSettings) -> Iterator[str]:
    """A freshly migrated database of this test, dropped afterwards."""
    dsn = create_temp_database(pg_service)
    yield dsn
    drop_database(pg_service, dsn)


@pytest.fixture
async def lane(kafka_service: BaseSettings, proc_dsn: str) -> AsyncIterator[Lane]:
    """A unique topic with 6 partitions, a unique group and a database."""
    token = secrets.token_hex(4)
    topic = f"test.proc.{token}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_service.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
        yield Lane(
            topic=topic,
            group=f"test-proc-{token}",
            dsn=proc_dsn,
            database=str(conninfo_to_dict(proc_dsn)["dbname"]),
            bootstrap=kafka_service.kafka_bootstrap,
        )
        await admin.delete_topics([topic])
    finally:
        await admin.close()
