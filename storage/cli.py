"""``pilotstream db``: migrations and maintenance of the TimescaleDB database.

- ``db migrate [--dry-run]``: apply pending migrations, seed cities, pilots and emission factors,
  ensure the pilot roles, enable the Community edition's features when present.
- ``db retention [--horizon-days N] [--every-s S]``: drop chunks of readings and rejections
  older than the horizon, once or every S seconds (the Apache edition has no retention policy).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from pilotstream.cli import EXIT_OK, add_settings_args, settings_from_args
from pilotstream.errors import SettingsError
from pilotstream.settings import BaseSettings, env_name, setting


@dataclass(frozen=True, kw_only=True)
class DbSettings(BaseSettings):
    """Settings of the ``db`` verbs."""

    section = "db"

    retention_horizon_days: int = setting(
        400, "readings and rejections older than this many days are dropped (whole chunks)"
    )
    retention_every_s: int = setting(0, "with db retention: repeat every this many seconds; 0 once")

    def validate(self) -> None:
        """Refuse a horizon under one day or a negative period."""
        super().validate()
        if self.retention_horizon_days < 1:
            _refuse("retention_horizon_days", "must be at least 1 day")
        if self.retention_every_s < 0:
            _refuse("retention_every_s", "must be 0 (run once) or a positive period")


def _refuse(name: str, why: str) -> NoReturn:
    msg = f"setting {name} ({env_name(name)}): {why}"
    raise SettingsError(msg)


def register(subparsers: Any) -> list[str]:
    """Add the ``db`` verb and its sub-verbs."""
    db = subparsers.add_parser("db", help="database migrations and maintenance")
    sub = db.add_subparsers(dest="db_verb", metavar="ACTION", required=True)
    mig = sub.add_parser("migrate", help="apply pending migrations, seed registry and roles")
    mig.add_argument("--dry-run", action="store_true", help="list the pending migrations only")
    add_settings_args(mig, DbSettings)
    mig.set_defaults(func=_migrate)
    ret = sub.add_parser("retention", help="drop chunks older than the retention horizon")
    add_settings_args(ret, DbSettings)
    ret.set_defaults(func=_retention)
    return ["db"]


def _migrate(args: argparse.Namespace) -> int:
    import psycopg

    from pilotstream.errors import ServiceUnavailable
    from storage.migrate import pending
    from storage.setup import setup_database

    settings: DbSettings = settings_from_args(DbSettings, args)
    try:
        if args.dry_run:
            with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
                todo = pending(conn)
            for m in todo:
                print(f"would apply {m.label}")
            print(f"{len(todo)} migration(s) pending")
            return EXIT_OK
        report = setup_database(settings.pg_dsn, retention_days=settings.retention_horizon_days)
    except psycopg.OperationalError as exc:
        msg = f"database unreachable: {exc}"
        raise ServiceUnavailable(msg) from exc
    for m in report.applied:
        print(f"applied {m.label}")
    print(
        f"{len(report.applied)} migration(s) applied; {report.cities} cities, {report.pilots} "
        f"pilots, {report.factors} emission factors, {len(report.roles)} pilot roles; "
        f"TimescaleDB edition {report.edition}"
    )
    return EXIT_OK


def _retention(args: argparse.Namespace) -> int:
    import psycopg

    from pilotstream.errors import ServiceUnavailable
    from pilotstream.logs import configure
    from storage.retention import drop_old_chunks

    settings: DbSettings = settings_from_args(DbSettings, args)
    configure(settings.log_level)
    while True:
        try:
            with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
                dropped = drop_old_chunks(conn, horizon_days=settings.retention_horizon_days)
        except psycopg.OperationalError as exc:
            msg = f"database unreachable: {exc}"
            raise ServiceUnavailable(msg) from exc
        for table, chunks in dropped.items():
            print(f"{table}: dropped {len(chunks)} chunk(s)")
        if settings.retention_every_s == 0:
            return EXIT_OK
        time.sleep(settings.retention_every_s)
