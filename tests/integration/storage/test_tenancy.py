"""Each pilot role sees exactly its own rows through every object it can reach, and is refused on
the hypertables and their chunk tables."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from storage.offsets import claim_partitions
from storage.roles import CITYOPS_ROLE, INGEST_ROLE, pilot_role
from storage.writer import Writer

from .data import HOUR_MS, ms, readings, rejections, utc, windows

pytestmark = pytest.mark.integration

T0 = ms(utc(2026, 5, 4, 6, 0))
# tenant -> rows it owns in readings / window_results / rejections / results_daily
OWN = {
    "paris-energy-1": (30, 2, 1, 1),
    "amsterdam-mobility-1": (12, 3, 2, 1),
    "tallinn-energy-1": (0, 0, 0, 0),
}
TENANT_VIEWS = {"readings": 0, "window_results": 1, "rejections": 2, "results_daily": 3}
NO_TENANT_COLUMN = ("tenant_api.cities", "tenant_api.emission_factors")


async def _load(aconn: psycopg.AsyncConnection) -> None:
    gen = (await claim_partitions(aconn, group="g", topic="t", partitions=[0])).generation
    async with Writer(dsn=f"{aconn.info.dsn} password={aconn.info.password or ''}") as w:
        for tenant, (n_read, n_win, n_rej, _) in OWN.items():
            if not n_read:
                continue
            await w.commit_batch(
                readings=readings(tenant=tenant, device=f"{tenant}-d", start_ms=T0, n=n_read),
                windows=windows(
                    tenant=tenant,
                    device=f"{tenant}-d",
                    starts_ms=[T0 + i * HOUR_MS for i in range(n_win)],
                    actual=[1.0] * n_win,
                    baseline=[2.0] * n_win,
                ),
                rejections=rejections(
                    tenant=tenant, device=f"{tenant}-d", reasons=["bad_json"] * n_rej, at_ms=T0
                ),
                offsets={("t", 0): 1},
                group="g",
                generation=gen,
            )
    await aconn.execute(
        "INSERT INTO devices (id, tenant, kind) VALUES "
        "('paris-energy-1-d', 'paris-energy-1', 'meter'), "
        "('amsterdam-mobility-1-d', 'amsterdam-mobility-1', 'bike_counter')"
    )
    await aconn.execute(
        "INSERT INTO device_metrics (device_id, metric, unit, kind) VALUES "
        "('paris-energy-1-d', 'power.active', 'kW', 'gauge'), "
        "('amsterdam-mobility-1-d', 'traffic.count.bike', 'count', 'delta')"
    )


def _reachable(conn: psycopg.Connection, role: str) -> set[str]:
    """Relations holding data that ``role`` may select. TimescaleDB's own catalog, cache and
    config schemas are readable by everyone by the extension's design; they hold metadata
    (hypertable and chunk definitions, jobs), no readings or results; so do a few statistics
    views of ``_timescaledb_internal`` (job stats, chunk sizes), filtered by the caller."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_timescaledb_catalog', "
        "'_timescaledb_cache', '_timescaledb_config', 'timescaledb_information', "
        "'timescaledb_experimental') "
        "AND has_table_privilege(%s, c.oid, 'SELECT')",
        (role,),
    ).fetchall()
    return {r[0] for r in rows}


async def test_each_pilot_sees_only_its_rows(db: str, aconn: psycopg.AsyncConnection) -> None:
    await _load(aconn)
    with psycopg.connect(db, autocommit=True) as conn:
        chunks = [
            r[0]
            for r in conn.execute(
                "SELECT show_chunks(h) FROM unnest(ARRAY['readings', 'window_results', "
                "'rejections']::regclass[]) h"
            ).fetchall()
        ]
        assert len(chunks) >= 3
        assert all(c.startswith("_timescaledb_internal.") for c in chunks)
        for tenant, own in OWN.items():
            role = pilot_role(tenant)
            # every relation with rows the role may select is one of its views; no chunk is
            reachable = _reachable(conn, role)
            assert not reachable & set(chunks)
            assert not any("_hyper_" in r for r in reachable), reachable
            reachable = {r for r in reachable if not r.startswith("_timescaledb_internal.")}
            assert reachable
            assert all(r.startswith("tenant_api.") for r in reachable), reachable
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            try:
                for view, k in TENANT_VIEWS.items():
                    count = conn.execute(f"SELECT count(*) FROM tenant_api.{view}").fetchone()
                    assert count == (own[k],), (tenant, view)
                for view in sorted(set(reachable) - set(NO_TENANT_COLUMN)):
                    others = conn.execute(
                        f"SELECT count(*) FROM {view} WHERE tenant <> %s",
                        (tenant,),
                    ).fetchone()
                    assert others == (0,), (tenant, view)
                for view in ("devices", "device_metrics"):
                    rows = conn.execute(f"SELECT count(*) FROM tenant_api.{view}").fetchone()
                    assert rows == (1 if own[0] else 0,), (tenant, view)
                city = conn.execute("SELECT id FROM tenant_api.cities").fetchall()
                assert city == [(tenant.split("-")[0],)]
                for table in (
                    "readings",
                    "window_results",
                    "rejections",
                    "results_daily",
                    "consumer_offsets",
                    "tenant_roles",
                    "pilots",
                    *chunks,
                ):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(f"SELECT 1 FROM {table} LIMIT 1")
            finally:
                conn.execute("RESET ROLE")


async def test_group_roles_have_their_grants(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        assert "public.readings" in _reachable(conn, CITYOPS_ROLE)
        assert "public.consumer_offsets" in _reachable(conn, CITYOPS_ROLE)
        writable = conn.execute(
            "SELECT has_table_privilege(%s, 'readings', 'INSERT'), "
            "has_table_privilege(%s, 'readings', 'INSERT'), "
            "has_table_privilege(%s, 'tenant_api.readings', 'INSERT')",
            (INGEST_ROLE, CITYOPS_ROLE, pilot_role("paris-energy-1")),
        ).fetchone()
        assert writable == (True, False, False)


async def test_tables_added_later_are_readable_by_city_ops_only(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS later_table (x int)")
        try:
            grants = conn.execute(
                "SELECT has_table_privilege(%s, 'later_table', 'SELECT'), "
                "has_table_privilege(%s, 'later_table', 'SELECT')",
                (CITYOPS_ROLE, pilot_role("paris-energy-1")),
            ).fetchone()
            assert grants == (True, False)
        finally:
            conn.execute("DROP TABLE later_table")
