"""Migration files, role names, settings of the db verbs, writer arguments."""

from __future__ import annotations

import pytest

from pilotstream.errors import SettingsError
from storage.cli import DbSettings
from storage.errors import StorageError
from storage.migrate import available
from storage.roles import pilot_role
from storage.writer import Writer


def test_migrations_are_numbered_in_order_and_start_with_the_extension() -> None:
    ms = available()
    assert [m.version for m in ms] == list(range(1, len(ms) + 1))
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb" in ms[0].sql
    assert len({m.checksum for m in ms}) == len(ms)


def test_pilot_role_names() -> None:
    assert pilot_role("paris-energy-1") == "pilot_paris_energy_1"
    with pytest.raises(StorageError, match="cannot name a database role"):
        pilot_role('x"; DROP TABLE readings; --')


def test_db_settings_refuse_bad_values() -> None:
    assert DbSettings.load(env={}).retention_horizon_days == 400
    with pytest.raises(SettingsError, match="PILOTSTREAM_RETENTION_HORIZON_DAYS"):
        DbSettings.load(env={"PILOTSTREAM_RETENTION_HORIZON_DAYS": "0"})
    with pytest.raises(SettingsError, match="retention_every_s"):
        DbSettings.load(env={}, overrides={"retention_every_s": -1})


def test_writer_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        Writer(dsn="", max_attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        Writer(dsn="", backoff_s=2.0, max_backoff_s=1.0)
