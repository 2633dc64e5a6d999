"""``pilotstream db migrate`` and ``db retention`` against a throw-away database."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from pilotstream.cli import main
from pilotstream.settings import BaseSettings
from storage.migrate import available
from storage.testing import create_temp_database, drop_database

pytestmark = pytest.mark.integration


def test_db_migrate_dry_run_migrate_rerun_and_retention(
    pg_service: BaseSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = create_temp_database(pg_service, migrate=False)
    db = ["--pg-database", str(conninfo_to_dict(dsn)["dbname"])]
    try:
        assert main(["db", "migrate", "--dry-run", *db]) == 0
        out = capsys.readouterr().out
        assert "would apply 0001_registry" in out
        assert f"{len(available())} migration(s) pending" in out
        assert main(["db", "migrate", *db]) == 0
        out = capsys.readouterr().out
        assert f"applied {available()[-1].label}" in out
        assert "10 pilots, 18 emission factors, 10 pilot roles" in out
        assert main(["db", "migrate", *db]) == 0
        assert "0 migration(s) applied" in capsys.readouterr().out
        assert main(["db", "retention", "--retention-horizon-days", "30", *db]) == 0
        assert "readings: dropped 0 chunk(s)" in capsys.readouterr().out
        assert main(["db", "retention", "--retention-horizon-days", "0", *db]) == 2
        assert main(["db", "migrate", "--pg-port", "1", *db]) == 3  # unreachable database
    finally:
        drop_database(pg_service, dsn)
