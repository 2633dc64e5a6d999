"""A city's hourly outdoor temperature from its weather stations' stored windows, and how far it goes.

Temperature models (TOWT) need the city's temperature for every hour they fit on or predict. The
weather stations may be processed by another processor of the group, so what is stored depends on
how far that processor got. :class:`CityTemperature` answers, from the database only:

- :meth:`hours`: the mean of the stations' hourly windows in a range, spikes removed
  (:func:`despike`), short gaps (up to ``max_gap_h`` hours between two known hours) filled by
  linear interpolation;
- :meth:`settled_until`: the event time up to which the stored temperature will not change any
  more: the earliest station's last stored hour end minus the allowed lateness (a window closes
  only once its station's watermark passed its end, and data later than the lateness is refused).
  ``None``: no station has stored anything since ``since_ms``.
"""

from __future__ import annotations

import polars as pl
import psycopg

HOUR_MS = 3_600_000
TEMPERATURE_SCHEMA = {"ts_ms": pl.Int64, "temperature": pl.Float64}
MAX_DEV_C = 10.0  # an hour this far from its neighbours' median is a spike, not weather

_HOURS = """
SELECT (extract(epoch FROM w.bucket_start) * 1000)::bigint AS ts_ms, avg(w.actual) AS temperature
FROM window_results w JOIN pilots p ON p.tenant = w.tenant
WHERE p.city = %s AND w.metric = 'weather.temperature' AND w.width_s = 3600
  AND w.bucket_start >= to_timestamp(%s / 1000.0) AND w.bucket_start < to_timestamp(%s / 1000.0)
GROUP BY 1 ORDER BY 1
"""
_ENDS = """
SELECT w.device_id, (extract(epoch FROM max(w.bucket_start)) * 1000)::bigint + 3600000
FROM window_results w JOIN pilots p ON p.tenant = w.tenant
WHERE p.city = %s AND w.metric = 'weather.temperature' AND w.width_s = 3600
  AND w.bucket_start >= to_timestamp(%s / 1000.0)
GROUP BY 1
"""


def despike(hours: pl.DataFrame, *, max_dev_c: float = MAX_DEV_C) -> pl.DataFrame:
    """Hourly ``ts_ms``, ``temperature`` without the hours further than ``max_dev_c`` from the
    median of the five hours centred on them (a station's spikes; they become gaps)."""
    median = pl.col("temperature").rolling_median(window_size=5, center=True, min_samples=3)
    return hours.sort("ts_ms").filter(
        ((pl.col("temperature") - median).abs() <= max_dev_c).fill_null(True)
    )


class CityTemperature:
    """Stored city temperature and how far it is settled (see module doc)."""

    def __init__(self, conn: psycopg.AsyncConnection, *, lateness_ms: int, max_gap_h: int = 3):
        self._conn = conn
        self._lateness_ms = lateness_ms
        self._max_gap_h = max_gap_h
        self._ends: dict[str, dict[str, int]] = {}  # city -> station -> last stored hour end

    async def hours(self, city: str, lo_ms: int, hi_ms: int) -> pl.DataFrame:
        """Hourly ``ts_ms``, ``temperature`` in ``[lo_ms, hi_ms)``, short gaps interpolated."""
        pad = self._max_gap_h * HOUR_MS
        cur = await self._conn.execute(_HOURS, (city, lo_ms - pad, hi_ms + pad))
        rows = await cur.fetchall()
        known = despike(pl.DataFrame(rows, schema=TEMPERATURE_SCHEMA, orient="row"))
        if known.height < 2:
            return known.filter(pl.col("ts_ms").is_between(lo_ms, hi_ms, closed="left"))
        first, last = int(known["ts_ms"][0]), int(known["ts_ms"][-1])
        grid = pl.DataFrame({"ts_ms": pl.int_range(first, last + 1, HOUR_MS, eager=True)})
        filled = (
            grid.join(known, on="ts_ms", how="left")
            .with_columns(
                _known=pl.col("temperature").is_not_null(),
                _run=pl.col("temperature").is_not_null().cum_sum(),
            )
            .with_columns(_gap=pl.len().over("_run") - 1)  # missing hours after each known one
            .with_columns(
                temperature=pl.when(pl.col("_known") | (pl.col("_gap") <= self._max_gap_h))
                .then(pl.col("temperature").interpolate())
                .otherwise(None)
            )
        )
        return filled.filter(
            pl.col("temperature").is_not_null()
            & pl.col("ts_ms").is_between(lo_ms, hi_ms, closed="left")
        ).select(list(TEMPERATURE_SCHEMA))

    async def settled_until(self, city: str, since_ms: int) -> int | None:
        """Event time before which the city's stored temperature is final (see module doc)."""
        ends = self._ends.setdefault(city, {})
        lo = min(ends.values(), default=since_ms) - HOUR_MS
        cur = await self._conn.execute(_ENDS, (city, max(lo, since_ms)))
        for station, end in await cur.fetchall():
            ends[station] = max(ends.get(station, 0), int(end))
        if not ends:
            return None
        return min(ends.values()) - self._lateness_ms
