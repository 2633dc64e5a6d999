"""TimescaleDB editions: detect the licence and use the Community features where present.

The Apache edition (local stack) has hypertables, ``time_bucket`` and ``drop_chunks``; the
Community ("timescale") edition adds compression, retention policies and continuous aggregates.
On Apache, retention runs from the app (:mod:`storage.retention`) and the daily rollup
``results_daily`` is maintained by the writer; on Community, policies do the same work in the
server and an hourly continuous aggregate of the window results is added for dashboards.
"""

from __future__ import annotations

from typing import Literal

import psycopg

from pilotstream.logs import get_logger

log = get_logger(__name__)

Edition = Literal["apache", "timescale"]

# (hypertable, segment-by columns, order-by, compress after)
_COMPRESSION = (
    ("readings", "device_id, metric", "ts DESC", "7 days"),
    ("window_results", "device_id, metric, width_s", "bucket_start DESC", "30 days"),
)

_HOURLY_CAGG = """
CREATE MATERIALIZED VIEW IF NOT EXISTS results_hourly
WITH (timescaledb.continuous) AS
SELECT time_bucket(interval '1 hour', bucket_start) AS hour, tenant, device_id, metric, width_s,
       sum(actual) AS actual, sum(baseline) AS baseline, sum(delta) AS delta,
       sum(avoided_co2e_kg) AS avoided_co2e_kg, count(*) AS windows, avg(coverage) AS coverage
FROM window_results
GROUP BY 1, 2, 3, 4, 5
WITH NO DATA
"""


def detect_edition(conn: psycopg.Connection) -> Edition:
    """``apache`` or ``timescale`` from ``timescaledb.license``."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return "timescale" if row and row[0] == "timescale" else "apache"


def apply_edition_features(
    conn: psycopg.Connection, *, retention_days: int | None = None
) -> Edition:
    """On the Community edition: compression, retention policy, hourly continuous aggregate.

    Idempotent. Does nothing on the Apache edition (whose equivalents run from the app).
    ``conn`` must be in autocommit mode (continuous aggregates cannot be created in a transaction).
    """
    edition = detect_edition(conn)
    if edition != "timescale":
        return edition
    for table, segment_by, order_by, after in _COMPRESSION:
        enabled = conn.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = %s",
            (table,),
        ).fetchone()
        if not (enabled and enabled[0]):  # settings cannot change once chunks are compressed
            conn.execute(
                f"ALTER TABLE {table} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = '{segment_by}', "
                f"timescaledb.compress_orderby = '{order_by}')"
            )
        conn.execute(
            f"SELECT add_compression_policy('{table}', interval '{after}', if_not_exists => true)"
        )
    if retention_days is not None:
        for table in ("readings", "rejections"):
            conn.execute(
                f"SELECT add_retention_policy('{table}', make_interval(days => %s), "
                "if_not_exists => true)",
                (retention_days,),
            )
    conn.execute(_HOURLY_CAGG)
    conn.execute(
        "SELECT add_continuous_aggregate_policy('results_hourly', start_offset => interval '30 days',"
        " end_offset => interval '1 hour', schedule_interval => interval '15 minutes',"
        " if_not_exists => true)"
    )
    conn.execute("GRANT SELECT ON results_hourly TO pilotstream_cityops")
    log.info("edition_features_applied", edition=edition)
    return edition
