"""Retention with ``drop_chunks``: whole chunks older than the horizon go, nothing else.

On the Apache edition the app runs this on a schedule (``pilotstream db retention``); the
Community edition can use a retention policy instead (:func:`storage.editions.apply_edition_features`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from pilotstream.logs import get_logger
from storage.errors import StorageError

log = get_logger(__name__)

# Hypertables whose old chunks may be dropped. Window results and their daily rollup are the
# programme's record and are kept.
RETAINED_TABLES = ("readings", "rejections")


def drop_old_chunks(
    conn: psycopg.Connection,
    *,
    horizon_days: float,
    tables: tuple[str, ...] = RETAINED_TABLES,
    now: datetime | None = None,
) -> dict[str, list[str]]:
    """Drop the chunks of ``tables`` whose whole range is older than ``now - horizon_days``.

    Returns the dropped chunk names per table.
    """
    if horizon_days <= 0:
        msg = f"retention horizon must be positive, not {horizon_days} days"
        raise StorageError(msg)
    unknown = set(tables) - set(RETAINED_TABLES)
    if unknown:
        msg = f"retention is not allowed on {sorted(unknown)}"
        raise StorageError(msg)
    cutoff = (now or datetime.now().astimezone()) - timedelta(days=horizon_days)
    out: dict[str, list[str]] = {}
    with conn.transaction():
        for table in tables:
            rows = conn.execute(
                "SELECT drop_chunks(%s::regclass, older_than => %s::timestamptz)", (table, cutoff)
            ).fetchall()
            out[table] = [str(r[0]) for r in rows]
            log.info("chunks_dropped", table=table, chunks=len(rows), cutoff=cutoff.isoformat())
    return out
