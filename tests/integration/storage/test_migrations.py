"""Migrations from an empty database, re-run, dry run, edited-migration refusal, seeded registry."""

from __future__ import annotations

import psycopg
import pytest

from pilotstream.settings import BaseSettings
from storage.errors import MigrationError
from storage.migrate import available, migrate, pending
from storage.setup import setup_database
from storage.testing import create_temp_database, drop_database

pytestmark = pytest.mark.integration


def test_migrate_from_empty_then_rerun_changes_nothing(pg_service: BaseSettings) -> None:
    dsn = create_temp_database(pg_service, migrate=False)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert [m.label for m in migrate(conn, dry_run=True)] == [m.label for m in available()]
            assert conn.execute("SELECT to_regclass('readings')").fetchone() == (None,)
            first = migrate(conn)
            assert [m.version for m in first] == [m.version for m in available()]
            assert pending(conn) == []
            assert migrate(conn) == []
            recorded = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
            assert recorded == (len(available()),)
            hypertables = conn.execute(
                "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
                "ORDER BY 1"
            ).fetchall()
            assert [(h, str(i)) for h, i in hypertables] == [
                ("readings", "1 day, 0:00:00"),
                ("rejections", "7 days, 0:00:00"),
                ("window_results", "7 days, 0:00:00"),
            ]
        report = setup_database(dsn)
        assert report.applied == []
        assert (report.cities, report.pilots, report.factors) == (5, 10, 18)
        assert report.edition in ("apache", "timescale")
        again = setup_database(dsn)  # idempotent, including the seed and the roles
        assert again.applied == []
        assert again.roles == report.roles
        with psycopg.connect(dsn) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM cities), (SELECT count(*) FROM pilots), "
                "(SELECT count(*) FROM emission_factors), (SELECT count(*) FROM tenant_roles)"
            ).fetchone()
            assert counts == (5, 10, 18, 10)
            tz = conn.execute("SELECT tz FROM cities WHERE id = 'helsinki'").fetchone()
            assert tz == ("Europe/Helsinki",)
    finally:
        drop_database(pg_service, dsn)


def test_edited_migration_is_refused(pg_service: BaseSettings) -> None:
    dsn = create_temp_database(pg_service)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 2")
            with pytest.raises(MigrationError, match="0002_readings was edited"):
                migrate(conn)
    finally:
        drop_database(pg_service, dsn)


def test_migrate_needs_autocommit(storage_dsn: str) -> None:
    with psycopg.connect(storage_dsn) as conn, pytest.raises(MigrationError, match="autocommit"):
        migrate(conn)
