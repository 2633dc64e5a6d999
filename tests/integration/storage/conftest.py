"""A throw-away, migrated database for this session's storage tests (dropped at the end)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from pilotstream.settings import BaseSettings
from storage.testing import create_temp_database, drop_database

_TABLES = (
    "readings, window_results, results_daily, rejections, consumer_offsets, "
    "device_metrics, interventions, devices, baselines"
)


@pytest.fixture(scope="session")
def storage_dsn(pg_service: BaseSettings) -> Iterator[str]:
    """DSN of a freshly migrated database of its own."""
    dsn = create_temp_database(pg_service)
    yield dsn
    drop_database(pg_service, dsn)


@pytest.fixture
def db(storage_dsn: str) -> Iterator[str]:
    """The session database, emptied of data rows (registry and factors stay)."""
    with psycopg.connect(storage_dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_TABLES}")
    return storage_dsn


@pytest.fixture
async def aconn(db: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit async connection to the emptied database."""
    conn = await psycopg.AsyncConnection.connect(db, autocommit=True)
    yield conn
    await conn.close()
