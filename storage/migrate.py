"""Versioned SQL migrations: ``storage/migrations/NNNN_name.sql``, applied in order, once each.

Each migration runs in its own transaction together with the row that records it in
``schema_migrations``, under a transaction-level advisory lock, so two concurrent ``migrate`` runs
apply each migration exactly once. A migration edited after it was applied is refused (checksum).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from pilotstream.logs import get_logger
from storage.errors import MigrationError

log = get_logger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x5053_4D49  # advisory lock id: "PSMI"

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int  # the NNNN prefix
    name: str  # the rest of the file name
    sql: str  # its text
    checksum: str  # sha256 of the text

    @property
    def label(self) -> str:
        """``NNNN_name`` as in the file name."""
        return f"{self.version:04d}_{self.name}"


def available() -> list[Migration]:
    """The migrations shipped in the package, ordered by version."""
    out: list[Migration] = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                msg = f"migration file {entry.name} does not match NNNN_name.sql"
                raise MigrationError(msg)
            continue
        sql = entry.read_text("utf-8")
        digest = hashlib.sha256(sql.encode()).hexdigest()
        out.append(Migration(int(match[1]), match[2], sql, digest))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        msg = f"two migrations share a version: {versions}"
        raise MigrationError(msg)
    return out


def applied(conn: psycopg.Connection) -> dict[int, str]:
    """Applied versions and their checksums (empty when the table does not exist yet)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(v): str(c) for v, c in rows}


def pending(conn: psycopg.Connection) -> list[Migration]:
    """Migrations not applied yet; refuses if an applied one was edited since."""
    done = applied(conn)
    out = []
    for m in available():
        if m.version not in done:
            out.append(m)
        elif done[m.version] != m.checksum:
            msg = f"migration {m.label} was edited after it was applied (checksum differs)"
            raise MigrationError(msg)
    return out


def migrate(conn: psycopg.Connection, *, dry_run: bool = False) -> list[Migration]:
    """Apply the pending migrations, each in its own transaction; return those applied (or due).

    ``conn`` must be in autocommit mode (each migration opens its own transaction).
    """
    if not conn.autocommit:
        msg = "migrate() needs an autocommit connection: each migration is its own transaction"
        raise MigrationError(msg)
    todo = pending(conn)
    if dry_run:
        return todo
    ran: list[Migration] = []
    for m in todo:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(_CREATE_TABLE)
            if conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (m.version,)
            ).fetchone():
                continue  # applied meanwhile by a concurrent run
            try:
                conn.execute(m.sql.encode())
            except psycopg.Error as exc:
                msg = f"migration {m.label} failed: {exc}"
                raise MigrationError(msg) from exc
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (m.version, m.name, m.checksum),
            )
        log.info("migration_applied", version=m.version, name=m.name)
        ran.append(m)
    return ran
