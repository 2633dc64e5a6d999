"""Per-pilot database roles, created from the registry.

Group roles (created by migration 0005): ``pilotstream_ingest`` (writes readings, results, offsets),
``pilotstream_cityops`` (reads everything), ``pilotstream_tenant`` (may read schema ``tenant_api``
only). Each pilot gets a role ``pilot_<tenant with - as _>``, member of ``pilotstream_tenant`` and
mapped to its tenant in ``tenant_roles``; the views of ``tenant_api`` keep the rows of that tenant.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from pilotstream.registry import Registry, load_registry
from storage.errors import StorageError

TENANT_GROUP = "pilotstream_tenant"
INGEST_ROLE = "pilotstream_ingest"
CITYOPS_ROLE = "pilotstream_cityops"

_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,56}$")


def pilot_role(tenant: str) -> str:
    """The database role of a pilot: ``pilot_`` + tenant id with ``-`` replaced by ``_``."""
    if not _TENANT.match(tenant):
        msg = f"tenant id {tenant!r} cannot name a database role (lower-case letters, digits, -)"
        raise StorageError(msg)
    return "pilot_" + tenant.replace("-", "_")


def ensure_pilot_role(conn: psycopg.Connection, tenant: str, *, password: str | None = None) -> str:
    """Create (if missing) the pilot's role, make it a tenant, map it to ``tenant``; return its name.

    With ``password`` the role may log in; without, it is used through ``SET ROLE``.
    """
    role = pilot_role(tenant)
    ident = sql.Identifier(role)
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                pass  # created concurrently (roles are shared by every database of the cluster)
        if password is not None:
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password))
            )
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(TENANT_GROUP), ident))
        conn.execute(
            "INSERT INTO tenant_roles (role, tenant) VALUES (%s, %s) "
            "ON CONFLICT (role) DO UPDATE SET tenant = EXCLUDED.tenant",
            (role, tenant),
        )
    return role


def ensure_pilot_roles(conn: psycopg.Connection, registry: Registry | None = None) -> list[str]:
    """A role for every pilot of the registry; returns the role names."""
    reg = registry or load_registry()
    return [ensure_pilot_role(conn, tenant) for tenant in sorted(reg.pilots)]
