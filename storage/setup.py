"""Bring a database up to date: migrations, registry seed, pilot roles, edition features."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from pilotstream.registry import Registry
from storage.editions import Edition, apply_edition_features
from storage.migrate import Migration, migrate
from storage.registry_sync import sync_emission_factors, sync_registry
from storage.roles import ensure_pilot_roles


@dataclass(frozen=True, slots=True)
class SetupReport:
    """What :func:`setup_database` did."""

    applied: list[Migration]  # migrations applied by this run
    cities: int  # cities upserted
    pilots: int  # pilots upserted
    factors: int  # emission factors upserted
    roles: list[str]  # pilot roles ensured
    edition: Edition  # detected TimescaleDB edition


def setup_database(
    dsn: str, *, registry: Registry | None = None, retention_days: int | None = None
) -> SetupReport:
    """Migrate ``dsn``'s database, seed the registry and factors, ensure pilot roles. Idempotent.

    ``retention_days`` sets the retention policy on the Community edition (ignored on Apache,
    where ``pilotstream db retention`` does the same work).
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        applied = migrate(conn)
        cities, pilots = sync_registry(conn, registry)
        factors = sync_emission_factors(conn)
        roles = ensure_pilot_roles(conn, registry)
        edition = apply_edition_features(conn, retention_days=retention_days)
    return SetupReport(applied, cities, pilots, factors, roles, edition)
