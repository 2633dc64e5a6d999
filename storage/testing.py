"""Throw-away databases for integration tests: ``create_temp_database(settings) -> dsn``.

Each test session gets its own freshly migrated database (``pilotstream_test_<random>``) on the
stack's cluster, so parallel sessions never see each other's rows; drop it with
:func:`drop_database`. Roles are cluster-wide and shared (they are created idempotently).
"""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pilotstream.settings import BaseSettings
from storage.setup import setup_database

PREFIX = "pilotstream_test_"


def create_temp_database(settings: BaseSettings, *, migrate: bool = True) -> str:
    """Create an empty database with TimescaleDB, migrated and seeded unless ``migrate=False``.

    Returns its DSN. The connecting role must be allowed to create databases.
    """
    name = PREFIX + secrets.token_hex(4)
    with psycopg.connect(settings.pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(settings.pg_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    if migrate:
        setup_database(dsn)
    return dsn


def drop_database(settings: BaseSettings, dsn: str) -> None:
    """Drop a database made by :func:`create_temp_database` (closing its other sessions)."""
    name = conninfo_to_dict(dsn)["dbname"]
    if not str(name).startswith(PREFIX):
        msg = f"refusing to drop {name!r}: not a test database"
        raise ValueError(msg)
    with psycopg.connect(settings.pg_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )
