"""Baselines for stream windows: the intervention splits baseline and reporting periods.

The processor asks a :class:`BaselineProvider` to annotate each batch of closed windows with
``baseline`` (null: none), ``baseline_model_id`` and ``reporting`` (False before the pilot's
intervention: no avoided emissions there). :class:`StoredBaselines` is the database-backed one:

- interventions of kind ``start`` (a device row overrides the pilot-wide one) come from the
  ``interventions`` table, re-read every ``refresh_s``;
- per (device, metric) it uses the newest model in ``baselines``; without one it fits a
  time-of-week model (``processors.baselines.tow``) on the device's stored hourly windows of the
  baseline period, and, when the baseline period is long enough for it and the city's weather
  temperature is stored, the hourly TOWT model too, keeping TOWT when it is usable and fits
  better; the model is stored and cached. A device without enough history gets no baseline (its
  windows are masked) and is retried after ``refresh_s``.

Results must not depend on how far other processors got (live and replay, one or three
processes give the same windows), so nothing is fitted or predicted on data that may still change:

- a fit waits until the baseline period is final: the device's own windows (its closed windows
  reach ``start + lateness + 1 h``) and, when TOWT may be used, the city's temperature
  (:meth:`CityTemperature.settled_until` reaches the start);
- a TOWT prediction waits for its hour's temperature (a missing hour is final once the stations
  are settled well past it, and then gets no baseline).

A window that has to wait is returned without a baseline now (it is stored, delta 0) and kept;
once it can be scored, a later :meth:`StoredBaselines.annotate` returns it again with its
baseline (the writer stores it as a revision). After ``wait_s`` of wall time a window stops
waiting (and a fit goes ahead on what is stored), logged, so a station that never reports again
cannot hold results forever. :meth:`StoredBaselines.pending` counts the waiting windows; the
processor does not exit while there are any.
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
from processors.baselines.daylight import fit_daylight
from processors.baselines.hourly import HourlyParams, fit_hourly
from processors.city_temperature import CityTemperature

log = get_logger(__name__)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
TEMPERATURE_METHODS = frozenset({"hourly", "daily"})  # need the hour's (day's) temperature
DARKNESS_METRICS = frozenset({"energy.lighting"})  # also fitted with the daylight model
# Hourly windows of devices without a model are kept for the last calls only: their commits may
# still be in flight when a fit reads the stored windows (at most one per writer lane, and the
# idle timer's), older ones are stored. Kept per device for 14 days instead, they held 33.6M rows
# (1.8 GB) for 100,000 devices in their baseline period: memory grew with the run, not the poll.
RECENT_CALLS = 16
WINDOW_KEY = ["device_id", "metric", "width_s", "bucket_start_ms"]
_RECENT_SCHEMA = {
    "device_id": pl.String,
    "metric": pl.String,
    "ts_ms": pl.Int64,
    "usage": pl.Float64,
    "call": pl.Int64,  # the annotate call that saw it
}
_KEY_SCHEMA = {"device_id": pl.String, "metric": pl.String}
_ENDS_SCHEMA = {"device_id": pl.String, "metric": pl.String, "end_ms": pl.Int64}


class BaselineProvider(Protocol):
    """Annotates windows with their baseline; the processor's only view of baselines."""

    async def annotate(self, windows: pl.DataFrame) -> pl.DataFrame:
        """Add ``baseline`` (Float64, null = none), ``baseline_model_id`` (String) and
        ``reporting`` (Boolean) to ``windows`` (tenant, device_id, metric, width_s,
        bucket_start_ms, needs_baseline), in input order; windows returned earlier without a
        baseline that now have one follow them (restatements)."""
        ...

    def pending(self) -> int:
        """Windows returned without a baseline that may still get one."""
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

    def pending(self) -> int:
        """See :class:`BaselineProvider`."""
        return 0


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
        lateness_ms: int = 3_600_000,
        wait_s: float = 120.0,
        max_gap_h: int = 3,
    ):
        if baseline_days < 28 or refresh_s <= 0 or lateness_ms < 0 or wait_s < 0:
            msg = "baseline_days must be >= 28, refresh_s > 0, lateness_ms and wait_s >= 0"
            raise ValueError(msg)
        self._conn = conn
        self._registry = registry
        self._days = baseline_days
        self._hourly_min_days = hourly_min_days
        self._refresh_s = refresh_s
        self._lateness_ms = lateness_ms
        self._wait_s = wait_s
        self._max_gap_h = max_gap_h
        self._temps = CityTemperature(conn, lateness_ms=lateness_ms, max_gap_h=max_gap_h)
        self._starts = pl.DataFrame(
            schema={"tenant": pl.String, "device_id": pl.String, "start_ms": pl.Int64}
        )
        self._starts_at = -1e18
        self._models: dict[tuple[str, str], FittedModel | None] = {}
        self._missing_at: dict[tuple[str, str], float] = {}
        self._asked_at: dict[tuple[str, str], float] = {}  # fits deferred: since when
        # Hourly windows this provider has seen closed, for devices still without a model: a fit
        # runs while the latest polls may not be committed yet, so it unions these with the stored
        # windows and the model does not depend on commit timing (live and replay fit the same).
        self._recent = pl.DataFrame(schema=_RECENT_SCHEMA)
        self._calls = 0  # annotate calls so far
        self._ends = pl.DataFrame(schema=_ENDS_SCHEMA)  # closed windows' end, devices w/o model
        self._with_model = pl.DataFrame(schema=_KEY_SCHEMA)  # keys of self._models not None
        self._waiting: pl.DataFrame | None = None  # windows returned without a baseline, + _since

    def pending(self) -> int:
        """See :class:`BaselineProvider`."""
        return 0 if self._waiting is None else self._waiting.height

    async def annotate(self, windows: pl.DataFrame) -> pl.DataFrame:
        """See :class:`BaselineProvider` and the module doc (waiting windows)."""
        now = time.monotonic()
        self._remember(windows)
        self._note_progress(windows)
        await self._refresh_starts()
        frame = windows.with_columns(_since=pl.lit(now, pl.Float64))
        if self._waiting is not None and self._waiting.height:
            # a window restated in this batch replaces its waiting copy
            carried = self._waiting.join(windows.select(WINDOW_KEY), on=WINDOW_KEY, how="anti")
            frame = pl.concat([frame, carried], how="diagonal_relaxed")
        scored = await self._score(frame)
        fresh, carried = scored.head(windows.height), scored.slice(windows.height)
        self._keep_waiting(scored.filter(pl.col("_wait")), now, windows.columns)
        released = carried.filter(~pl.col("_wait") & pl.col("baseline").is_not_null())
        if carried.height != self.pending():  # log changes only, not every retry
            log.info(
                "baseline_waiting",
                carried=carried.height,
                released=released.height,
                without=carried.filter(~pl.col("_wait") & pl.col("baseline").is_null()).height,
                waiting=self.pending(),
            )
        cols = [*windows.columns, "baseline", "baseline_model_id", "reporting"]
        return pl.concat([fresh.select(cols), released.select(cols)])

    def _keep_waiting(self, waiting: pl.DataFrame, now: float, columns: list[str]) -> None:
        expired = waiting.filter(pl.lit(now) - pl.col("_since") > self._wait_s)
        if expired.height:
            log.warning(
                "baseline_wait_expired",
                windows=expired.height,
                devices=expired["device_id"].n_unique(),
                wait_s=self._wait_s,
            )
        kept = waiting.filter(pl.lit(now) - pl.col("_since") <= self._wait_s)
        self._waiting = kept.select(*columns, "_since") if kept.height else None

    async def _score(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` + reporting, baseline, baseline_model_id and ``_wait`` (not scorable yet)."""
        rows = frame.with_row_index("_r").join(
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
                schema={
                    "_r": pl.UInt32,
                    "baseline": pl.Float64,
                    "baseline_model_id": pl.String,
                    "_wait": pl.Boolean,
                }
            )
        ]
        for (tenant,), group in wanted.group_by("tenant"):
            parts.append(await self._predict(str(tenant), group))
        found = pl.concat(parts)
        out = rows.join(found, on="_r", how="left").sort("_r")
        return out.select(
            *frame.columns,
            "baseline",
            pl.col("baseline_model_id").fill_null(""),
            "reporting",
            pl.col("_wait").fill_null(False),
        )

    def _remember(self, windows: pl.DataFrame) -> None:
        """Keep the hourly windows of devices without a model, of the last RECENT_CALLS calls."""
        if "actual" not in windows.columns:
            return
        self._calls += 1
        hourly = windows.filter(pl.col("width_s") == 3600).select(
            "device_id",
            "metric",
            pl.col("bucket_start_ms").alias("ts_ms"),
            pl.col("actual").alias("usage"),
            call=pl.lit(self._calls, pl.Int64),
        )
        hourly = self._without_model(hourly)
        if hourly.is_empty():
            return
        # A poll may close weeks of a device's windows at once (a replay, a backlog): what the
        # last calls saw is kept whole, as their commits may not have landed when a fit reads.
        self._recent = (
            pl.concat([self._recent, hourly.cast(_RECENT_SCHEMA)])  # type: ignore[arg-type]
            .filter(pl.col("call") > self._calls - RECENT_CALLS)
            .unique(["device_id", "metric", "ts_ms"], keep="last", maintain_order=True)
        )

    def _note_progress(self, windows: pl.DataFrame) -> None:
        """How far each device without a model got: the end of its latest closed window."""
        if "needs_baseline" not in windows.columns:
            return
        ends = self._without_model(
            windows.filter(pl.col("needs_baseline"))
            .group_by("device_id", "metric")
            .agg(end_ms=(pl.col("bucket_start_ms") + pl.col("width_s") * 1000).max())
        )
        if ends.height:
            self._ends = (
                pl.concat([self._ends, ends.cast(_ENDS_SCHEMA)])  # type: ignore[arg-type]
                .group_by("device_id", "metric")
                .agg(pl.col("end_ms").max())
            )

    def _without_model(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self._with_model.is_empty() or frame.is_empty():
            return frame
        return frame.join(self._with_model, on=["device_id", "metric"], how="anti")

    async def _predict(self, tenant: str, group: pl.DataFrame) -> pl.DataFrame:
        """``_r``, baseline, baseline_model_id and ``_wait`` for one pilot's wanted windows."""
        city = self._registry.city_of(tenant)
        models: list[FittedModel] = []
        waiting: list[str] = []
        for (metric,), sub in group.group_by("metric"):
            start = int(sub["start_ms"].min())  # type: ignore[arg-type]
            found, wait = await self._models_for(
                tenant, str(metric), sub["device_id"].unique().to_list(), start, city.id
            )
            models += found
            waiting += wait
        cols = ["device_id", "metric", "bucket_start_ms", "width_s"]
        out = group.select("_r", *cols, _wait=pl.col("device_id").is_in(waiting))
        if not models:
            return out.select(
                "_r",
                baseline=pl.lit(None, pl.Float64),
                baseline_model_id=pl.lit(""),
                _wait=pl.col("_wait"),
            )
        temperature, settled = None, None
        if any(m.method in TEMPERATURE_METHODS for m in models):
            lo = int(group["bucket_start_ms"].min())  # type: ignore[arg-type]
            hi = int(group["bucket_start_ms"].max()) + HOUR_MS  # type: ignore[arg-type]
            # settled first: what is settled then is stored when the hours are read after it
            settled = await self._temps.settled_until(city.id, lo - DAY_MS)
            temperature = await self._temps.hours(city.id, lo, hi)
        pred = predict_windows(models, out.select(cols), tz=city.tz, temperature=temperature)
        out = out.with_columns(pred["baseline"], pred["baseline_model_id"])  # input order kept
        if temperature is not None:
            out = self._wait_for_temperature(out, models, settled)
        return out.select("_r", "baseline", "baseline_model_id", "_wait")

    def _wait_for_temperature(
        self, out: pl.DataFrame, models: list[FittedModel], settled: int | None
    ) -> pl.DataFrame:
        """Temperature-model windows without a baseline wait unless their hour is settled."""
        driven = [(m.device_id, m.metric) for m in models if m.method in TEMPERATURE_METHODS]
        keys = pl.DataFrame(driven, schema=["device_id", "metric"], orient="row")
        missing = (
            out.join(keys, on=["device_id", "metric"], how="semi")
            .filter(pl.col("baseline").is_null())
            .select("_r", "bucket_start_ms")
        )
        if missing.is_empty():
            return out
        # a missing hour is final once the stations are settled past it and its interpolation span
        span_ms = (self._max_gap_h + 1) * HOUR_MS
        hour = (pl.col("bucket_start_ms") // HOUR_MS) * HOUR_MS
        unsettled = missing.filter(
            pl.lit(settled is None) | (hour + span_ms > (settled if settled is not None else 0))
        )["_r"]
        final = missing.filter(~pl.col("_r").is_in(unsettled.implode()))
        if final.height:
            log.info(
                "baseline_temperature_missing",
                windows=final.height,
                first_ms=int(final["bucket_start_ms"].min()),  # type: ignore[arg-type]
                settled_ms=settled,
            )
        return out.with_columns(_wait=pl.col("_wait") | pl.col("_r").is_in(unsettled.implode()))

    async def _models_for(
        self, tenant: str, metric: str, devices: list[str], start_ms: int, city: str
    ) -> tuple[list[FittedModel], list[str]]:
        """Models of these devices (fitted when ready), and the devices still waiting for one."""
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
        waiting: list[str] = []
        if todo:
            waiting = await self._load_or_fit(tenant, metric, todo, start_ms, city)
        models = [m for d in devices if (m := self._models.get((d, metric))) is not None]
        return models, waiting

    async def _load_or_fit(
        self, tenant: str, metric: str, devices: list[str], start_ms: int, city: str
    ) -> list[str]:
        """Load stored models, fit the devices whose baseline period is final; returns the rest."""
        cur = await self._conn.execute(_STORED, (devices, metric))
        for device, _, method, params, model_id, p0, p1 in await cur.fetchall():
            self._models[(device, metric)] = _from_row(
                device, metric, method, params, model_id, p0, p1
            )
        missing = [d for d in devices if self._models.get((d, metric)) is None]
        ready, waiting = await self._ready(metric, missing, start_ms, city)
        if ready:
            fitted = await self._fit(tenant, metric, ready, start_ms)
            for d in ready:
                model = fitted.get(d)
                self._models[(d, metric)] = model
                self._asked_at.pop((d, metric), None)
                if model is None:
                    self._missing_at[(d, metric)] = time.monotonic()
        have = [d for d in devices if self._models.get((d, metric)) is not None]
        if have:
            keys = pl.DataFrame({"device_id": have, "metric": metric}, schema=_KEY_SCHEMA)
            self._with_model = pl.concat([self._with_model, keys]).unique()
            gone = pl.col("device_id").is_in(have) & (pl.col("metric") == metric)
            self._recent = self._recent.filter(~gone)
            self._ends = self._ends.filter(~gone)
        await self._conn.commit()
        return waiting

    async def _ready(
        self, metric: str, devices: list[str], start_ms: int, city: str
    ) -> tuple[list[str], list[str]]:
        """Split devices into those whose baseline period is final (see module doc) and the rest.

        A device waiting longer than ``wait_s`` (wall time) is fitted on what is stored.
        """
        if not devices:
            return [], []
        own_final = start_ms + self._lateness_ms + HOUR_MS
        ends = dict(
            self._ends.filter(pl.col("device_id").is_in(devices) & (pl.col("metric") == metric))
            .select("device_id", "end_ms")
            .iter_rows()
        )
        temps_final = True
        if self._days >= self._hourly_min_days:  # the temperature model may be chosen
            settled = await self._temps.settled_until(city, start_ms - self._days * DAY_MS)
            temps_final = settled is not None and settled >= start_ms
        now = time.monotonic()
        ready, waiting = [], []
        for d in devices:  # the devices of one pilot and metric without a model: a handful
            if temps_final and ends.get(d, -1) >= own_final:
                ready.append(d)
                continue
            asked = self._asked_at.setdefault((d, metric), now)
            if now - asked > self._wait_s:
                log.warning(
                    "baseline_fit_not_final", device_id=d, metric=metric, waited_s=self._wait_s
                )
                ready.append(d)
            else:
                waiting.append(d)
        return ready, waiting

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
        ).drop("metric", "call")
        hourly = (
            pl.concat([stored, seen])  # windows seen here win over possibly older stored values
            .unique(["device_id", "ts_ms"], keep="last", maintain_order=True)
            .sort("device_id", "ts_ms")
        )
        if hourly.is_empty():
            return {}
        temps = None
        if self._days >= self._hourly_min_days:
            temps = await self._temps.hours(city.id, *period)
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
        candidates = list(tow.values())
        if temps is not None and temps.height:
            candidates += fit_hourly(
                hourly,
                tz=city.tz,
                metric=metric,
                period=period,
                params=HourlyParams(min_days=self._hourly_min_days),
            )
        if metric in DARKNESS_METRICS and city.lat is not None and city.lon is not None:
            candidates += fit_daylight(
                hourly, metric=metric, tz=city.tz, period=period, lat=city.lat, lon=city.lon
            )
        chosen = best_models(candidates)
        for d in set(tow) - set(chosen):
            log.warning(
                "baseline_not_adequate",
                device_id=d,
                metric=metric,
                cvrmse=round(_cvrmse(tow[d]), 1),
                sufficient=tow[d].sufficient,
            )
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
                method=m.method,
                model_id=m.model_id,
            )
        return chosen

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


def best_models(candidates: list[FittedModel]) -> dict[str, FittedModel]:
    """Per device, the usable model (sufficient data, ASHRAE Guideline 14 fit) of lowest CV(RMSE).

    A device whose every model misses the thresholds gets none: its windows carry no savings,
    rather than savings from a model that does not describe it (e.g. an EV charger's sessions).
    """
    best: dict[str, FittedModel] = {}
    for m in candidates:
        other = best.get(m.device_id)
        if m.usable and (other is None or _cvrmse(m) < _cvrmse(other)):
            best[m.device_id] = m
    return best


def _cvrmse(m: FittedModel) -> float:
    return float("inf") if m.metrics is None else m.metrics.cvrmse
