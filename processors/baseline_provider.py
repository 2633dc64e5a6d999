"""Baselines for stream windows: the intervention splits baseline and reporting periods.

The processor asks a :class:`BaselineProvider` to annotate each batch of closed windows with
``baseline`` (null: none), ``baseline_model_id`` and ``reporting`` (False before the pilot's
intervention: no avoided emissions there). :class:`StoredBaselines` is the database-backed one:

- interventions of kind ``start`` (a device row overrides the pilot-wide one) come from the
  ``interventions`` table, re-read every ``refresh_s``;
- per (device, metric) it uses the newest model in ``baselines``; without one it fits a
  time-of-week model (``processors.baselines.tow``) on the device's stored hourly windows of the
  baseline period, and, when the city's weather temperature is stored for that period, the hourly
  TOWT model too, keeping TOWT when it is usable and fits better; the model is stored and cached.
  A device without enough history gets no baseline (its windows are masked) and is retried after
  ``refresh_s``.
"""

from __future__ import annotations

import json
import time
from typing import Protocol

import polars as pl
import psycopg

from pilotstream.logs import get_logger
from pilotstream.registry import Registry
from processors.baselines import FittedModel, fit_devices, predict_windows
from processors.baselines.hourly import HourlyParams, fit_hourly

log = get_logger(__name__)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
RECENT_HOURS = 14 * 24  # hourly windows kept per device until it has a model
_RECENT_SCHEMA = {
    "device_id": pl.String,
    "metric": pl.String,
    "ts_ms": pl.Int64,
    "usage": pl.Float64,
}


class BaselineProvider(Protocol):
    """Annotates windows with their baseline; the processor's only view of baselines."""

    async def annotate(self, windows: pl.DataFrame) -> pl.DataFrame:
        """Add ``baseline`` (Float64, null = none), ``baseline_model_id`` (String) and
        ``reporting`` (Boolean) to ``windows`` (tenant, device_id, metric, width_s,
        bucket_start_ms, needs_baseline), in input order."""
        ...


class NoBaselines:
    """Every window is in the reporting period and none has a baseline (tools, benchmarks)."""

    async def annotate(self, windows: pl.DataFrame) -> pl.DataFrame:
        """See :class:`BaselineProvider`."""
        return windows.with_columns(
            baseline=pl.lit(None, pl.Float64),
            baseline_model_id=pl.lit(""),
            reporting=pl.lit(True),
        )


_INTERVENTIONS = """
SELECT tenant, coalesce(device_id, ''), (extract(epoch FROM min(starts_at)) * 1000)::bigint
FROM interventions WHERE kind = 'start' GROUP BY tenant, device_id
"""
_STORED = """
SELECT DISTINCT ON (device_id, metric) device_id, metric, method, parameters, model_id,
    (extract(epoch FROM period_start) * 1000)::bigint, (extract(epoch FROM period_end) * 1000)::bigint
FROM baselines WHERE device_id = ANY(%s) AND metric = %s ORDER BY device_id, metric, created_at DESC
"""
_HOURLY = """
SELECT device_id, (extract(epoch FROM bucket_start) * 1000)::bigint AS ts_ms, actual AS usage
FROM window_results WHERE device_id = ANY(%s) AND metric = %s AND width_s = 3600
  AND bucket_start >= to_timestamp(%s / 1000.0) AND bucket_start < to_timestamp(%s / 1000.0)
"""
_TEMPERATURE = """
SELECT (extract(epoch FROM w.bucket_start) * 1000)::bigint AS ts_ms, avg(w.actual) AS temperature
FROM window_results w JOIN pilots p ON p.tenant = w.tenant
WHERE p.city = %s AND w.metric = 'weather.temperature' AND w.width_s = 3600
  AND w.bucket_start >= to_timestamp(%s / 1000.0) AND w.bucket_start < to_timestamp(%s / 1000.0)
GROUP BY 1 ORDER BY 1
"""
_STORE = """
INSERT INTO baselines (model_id, tenant, device_id, metric, method, parameters, fit_metrics,
    period_start, period_end)
VALUES (%s, %s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0), to_timestamp(%s / 1000.0))
ON CONFLICT (model_id) DO NOTHING
"""


class StoredBaselines:
    """Baselines from the ``baselines`` table, fitted and stored on first need (see module doc)."""

    def __init__(
        self,
        *,
        conn: psycopg.AsyncConnection,
        registry: Registry,
        baseline_days: int = 365,
        refresh_s: float = 300.0,
        hourly_min_days: int = 365,
    ):
        if baseline_days < 28 or refresh_s <= 0:
            msg = "baseline_days must be >= 28 and refresh_s > 0"
            raise ValueError(msg)
        self._conn = conn
        self._registry = registry
        self._days = baseline_days
        self._hourly_min_days = hourly_min_days
        self._refresh_s = refresh_s
        self._starts = pl.DataFrame(
            schema={"tenant": pl.String, "device_id": pl.String, "start_ms": pl.Int64}
        )
        self._starts_at = -1e18
        self._models: dict[tuple[str, str], FittedModel | None] = {}
        self._missing_at: dict[tuple[str, str], float] = {}
        # Hourly windows this provider has seen closed, for devices still without a model: a fit
        # runs while the latest polls may not be committed yet, so it unions these with the stored
        # windows and the model does not depend on commit timing (live and replay fit the same).
        self._recent = pl.DataFrame(schema=_RECENT_SCHEMA)

    async def annotate(self, windows: pl.DataFrame) -> pl.DataFrame:
        """See :class:`BaselineProvider`."""
        self._remember(windows)
        await self._refresh_starts()
        rows = windows.with_row_index("_r").join(
            self._starts.filter(pl.col("device_id") == "").drop("device_id"),
            on="tenant",
            how="left",
        )
        rows = rows.join(
            self._starts.filter(pl.col("device_id") != "").rename({"start_ms": "dev_start"}),
            on=["tenant", "device_id"],
            how="left",
        ).with_columns(start_ms=pl.coalesce("dev_start", "start_ms"))
        rows = rows.with_columns(
            reporting=pl.col("start_ms").is_null()
            | (pl.col("bucket_start_ms") >= pl.col("start_ms"))
        )
        wanted = rows.filter(
            pl.col("needs_baseline") & pl.col("start_ms").is_not_null() & pl.col("reporting")
        )
        parts = [
            pl.DataFrame(
                schema={"_r": pl.UInt32, "baseline": pl.Float64, "baseline_model_id": pl.String}
            )
        ]
        for (tenant,), group in wanted.group_by("tenant"):
            parts.append(await self._predict(str(tenant), group))
        found = pl.concat(parts)
        out = rows.join(found, on="_r", how="left").sort("_r")
        return out.select(
            *windows.columns,
            "baseline",
            pl.col("baseline_model_id").fill_null(""),
            "reporting",
        )

    def _remember(self, windows: pl.DataFrame) -> None:
        """Keep the hourly windows of devices without a model (bounded to RECENT_HOURS each)."""
        if "actual" not in windows.columns:
            return
        hourly = windows.filter(pl.col("width_s") == 3600).select(
            "device_id",
            "metric",
            pl.col("bucket_start_ms").alias("ts_ms"),
            pl.col("actual").alias("usage"),
        )
        if hourly.is_empty():
            return
        fitted = [k for k, m in self._models.items() if m is not None]
        if fitted:
            done = pl.DataFrame(fitted, schema=["device_id", "metric"], orient="row")
            hourly = hourly.join(done, on=["device_id", "metric"], how="anti")
        self._recent = (
            pl.concat([self._recent, hourly.cast(_RECENT_SCHEMA)])  # type: ignore[arg-type]
            .unique(["device_id", "metric", "ts_ms"], keep="last", maintain_order=True)
            .filter(
                pl.col("ts_ms")
                > pl.col("ts_ms").max().over("device_id", "metric") - RECENT_HOURS * HOUR_MS
            )
        )

    async def _predict(self, tenant: str, group: pl.DataFrame) -> pl.DataFrame:
        city = self._registry.city_of(tenant)
        models: list[FittedModel] = []
        for (metric,), sub in group.group_by("metric"):
            start = int(sub["start_ms"].min())  # type: ignore[arg-type]
            models += await self._models_for(
                tenant, str(metric), sub["device_id"].unique().to_list(), start
            )
        if not models:
            return group.select(
                "_r", baseline=pl.lit(None, pl.Float64), baseline_model_id=pl.lit("")
            )
        temperature = None
        if any(m.method != "tow" for m in models):
            lo = int(group["bucket_start_ms"].min())  # type: ignore[arg-type]
            hi = int(group["bucket_start_ms"].max()) + HOUR_MS  # type: ignore[arg-type]
            temperature = await self._temperature(city.id, lo, hi)
        cols = ["device_id", "metric", "bucket_start_ms", "width_s"]
        pred = predict_windows(models, group.select(cols), tz=city.tz, temperature=temperature)
        return pred.select(group["_r"], "baseline", "baseline_model_id")  # input order kept

    async def _models_for(
        self, tenant: str, metric: str, devices: list[str], start_ms: int
    ) -> list[FittedModel]:
        now = time.monotonic()
        todo = [
            d
            for d in devices
            if (d, metric) not in self._models
            or (
                self._models[(d, metric)] is None
                and now - self._missing_at.get((d, metric), 0) > self._refresh_s
            )
        ]
        if todo:
            await self._load_or_fit(tenant, metric, todo, start_ms)
        return [m for d in devices if (m := self._models.get((d, metric))) is not None]

    async def _load_or_fit(
        self, tenant: str, metric: str, devices: list[str], start_ms: int
    ) -> None:
        cur = await self._conn.execute(_STORED, (devices, metric))
        for device, _, method, params, model_id, p0, p1 in await cur.fetchall():
            self._models[(device, metric)] = _from_row(
                device, metric, method, params, model_id, p0, p1
            )
        missing = [d for d in devices if self._models.get((d, metric)) is None]
        if missing:
            fitted = await self._fit(tenant, metric, missing, start_ms)
            for d in missing:
                model = fitted.get(d)
                self._models[(d, metric)] = model
                if model is None:
                    self._missing_at[(d, metric)] = time.monotonic()
        have = [d for d in devices if self._models.get((d, metric)) is not None]
        self._recent = self._recent.filter(
            ~(pl.col("device_id").is_in(have) & (pl.col("metric") == metric))
        )
        await self._conn.commit()

    async def _fit(
        self, tenant: str, metric: str, devices: list[str], start_ms: int
    ) -> dict[str, FittedModel]:
        city = self._registry.city_of(tenant)
        period = (start_ms - self._days * DAY_MS, start_ms)
        cur = await self._conn.execute(_HOURLY, (devices, metric, *period))
        rows = await cur.fetchall()
        stored = pl.DataFrame(
            rows,
            schema={"device_id": pl.String, "ts_ms": pl.Int64, "usage": pl.Float64},
            orient="row",
        )
        seen = self._recent.filter(
            pl.col("device_id").is_in(devices)
            & (pl.col("metric") == metric)
            & pl.col("ts_ms").is_between(period[0], period[1], closed="left")
        ).drop("metric")
        hourly = (
            pl.concat([stored, seen])  # windows seen here win over possibly older stored values
            .unique(["device_id", "ts_ms"], keep="last", maintain_order=True)
            .sort("device_id", "ts_ms")
        )
        if hourly.is_empty():
            return {}
        temps = await self._temperature(city.id, *period)
        hourly = (
            hourly.join(temps, on="ts_ms", how="left")
            if temps is not None
            else hourly.with_columns(temperature=pl.lit(None, pl.Float64))
        )

        def history(ids: object, _m: str, _a: int, _b: int) -> pl.DataFrame:
            return hourly

        tow = {
            m.device_id: m
            for m in fit_devices(
                history, device_ids=devices, metric=metric, tz=city.tz, period=period, method="tow"
            )
        }
        best = dict(tow)
        if temps is not None and temps.height:
            towt = fit_hourly(
                hourly,
                tz=city.tz,
                metric=metric,
                period=period,
                params=HourlyParams(min_days=self._hourly_min_days),
            )
            for m in towt:
                other = tow.get(m.device_id)
                if m.usable and (other is None or _cvrmse(m) < _cvrmse(other)):
                    best[m.device_id] = m
        chosen = {d: m for d, m in best.items() if m.sufficient}
        for m in chosen.values():
            await self._conn.execute(
                _STORE,
                (
                    m.model_id,
                    tenant,
                    m.device_id,
                    metric,
                    m.method,
                    json.dumps(m.to_dict()),
                    json.dumps(None if m.metrics is None else m.metrics.to_dict()),
                    m.period_start_ms,
                    m.period_end_ms,
                ),
            )
            log.info(
                "baseline_fitted",
                tenant=tenant,
                device_id=m.device_id,
                metric=metric,
                model_id=m.model_id,
            )
        return chosen

    async def _temperature(self, city: str, lo: int, hi: int) -> pl.DataFrame | None:
        cur = await self._conn.execute(_TEMPERATURE, (city, lo, hi))
        rows = await cur.fetchall()
        if not rows:
            return None
        return pl.DataFrame(
            rows, schema={"ts_ms": pl.Int64, "temperature": pl.Float64}, orient="row"
        )

    async def _refresh_starts(self) -> None:
        if time.monotonic() - self._starts_at < self._refresh_s:
            return
        cur = await self._conn.execute(_INTERVENTIONS)
        rows = await cur.fetchall()
        await self._conn.commit()
        self._starts = pl.DataFrame(rows, schema=self._starts.schema, orient="row")
        self._starts_at = time.monotonic()


def _from_row(
    device: str,
    metric: str,
    method: str,
    params: dict[str, object],
    model_id: str,
    p0: int,
    p1: int,
) -> FittedModel:
    """A stored model: ``parameters`` holds :meth:`FittedModel.to_dict` or the bare parameters."""
    if isinstance(params, dict) and "method" in params and "params" in params:
        return FittedModel.from_dict(params)
    return FittedModel(
        method=method,
        device_id=device,
        metric=metric,
        period_start_ms=int(p0),
        period_end_ms=int(p1),
        params=dict(params),
        metrics=None,
        sufficient=True,
        model_id=model_id,
    )


def _cvrmse(m: FittedModel) -> float:
    return float("inf") if m.metrics is None else m.metrics.cvrmse
