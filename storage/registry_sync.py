"""Seed the registry tables from configuration: cities and pilots from ``registry.toml``, emission
factors from ``pilotstream/data/emission_factors.csv``. Upserts, so a re-run changes nothing."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path

import psycopg

from pilotstream.registry import Registry, load_registry

_CITY = """
INSERT INTO cities (id, name, tz, country) VALUES (%s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, tz = EXCLUDED.tz, country = EXCLUDED.country
"""
_PILOT = """
INSERT INTO pilots (tenant, city, lot, description, params) VALUES (%s, %s, %s, %s, %s::jsonb)
ON CONFLICT (tenant) DO UPDATE SET city = EXCLUDED.city, lot = EXCLUDED.lot,
    description = EXCLUDED.description, params = EXCLUDED.params
"""
_FACTOR = """
INSERT INTO emission_factors (id, scope, unit, value, basis, source, year, valid_from, valid_to)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz)
ON CONFLICT (id) DO UPDATE SET scope = EXCLUDED.scope, unit = EXCLUDED.unit,
    value = EXCLUDED.value, basis = EXCLUDED.basis, source = EXCLUDED.source,
    year = EXCLUDED.year, valid_from = EXCLUDED.valid_from, valid_to = EXCLUDED.valid_to
"""


def sync_registry(conn: psycopg.Connection, registry: Registry | None = None) -> tuple[int, int]:
    """Upsert cities and pilots; returns (cities, pilots) written."""
    reg = registry or load_registry()
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_CITY, [(c.id, c.name, c.tz, c.country) for c in reg.cities.values()])
        cur.executemany(
            _PILOT,
            [
                (p.tenant, p.city, p.lot, p.description, json.dumps(p.params, sort_keys=True))
                for p in reg.pilots.values()
            ],
        )
    return len(reg.cities), len(reg.pilots)


def sync_emission_factors(conn: psycopg.Connection, path: Path | None = None) -> int:
    """Upsert the emission factor table from its CSV (the packaged one by default)."""
    if path is None:
        text = (
            resources.files("pilotstream").joinpath("data/emission_factors.csv").read_text("utf-8")
        )
    else:
        text = path.read_text("utf-8")
    rows = [
        (
            r["factor_id"],
            r["scope"],
            r["unit"],
            float(r["value"]),
            r["basis"],
            r["source"],
            int(r["year"]),
            r["valid_from"],
            r["valid_to"] or None,
        )
        for r in csv.DictReader(io.StringIO(text))
    ]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_FACTOR, rows)
    return len(rows)
