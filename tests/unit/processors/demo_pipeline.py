"""The processor's kernel chain over a simulated run, in memory: readings -> windows -> avoided.

Mirrors :class:`processors.batch.BatchProcessor` without Kafka or a database: readings are
delivered in the order the simulator's messages are (duplicates, out-of-order and late messages
included; messages that ingest refuses are left out), cut into polls of ``poll_ms`` of delivery
time; each poll is one :func:`step` with ``now_ms`` = its last delivery time, followed by the
idle timer (:func:`close_idle`). Baselines are fitted like :mod:`processors.baseline_provider`
on the hourly windows of ``baseline_days`` before the intervention: time-of-week, replaced by the
temperature model when that one is usable and fits better (city temperature from the weather
stations' windows).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from processors.baseline_provider import DARKNESS_METRICS, best_models
from processors.baselines import (
    FittedModel,
    HourlyParams,
    fit_devices,
    fit_hourly,
    predict_windows,
)
from processors.baselines.daylight import fit_daylight
from processors.city_temperature import despike
from processors.factors import load_factors
from processors.kernels import (
    READING_SCHEMA,
    EventTimeParams,
    EventTimeState,
    close_idle,
    emission_deltas,
    pilot_rules,
    step,
)

DAY_MS = 86_400_000
DELIVERED = ("", "duplicate", "out_of_order", "late")  # message faults ingest lets through
WINDOW_KEY = ["width_s", "device_id", "metric", "bucket_start_ms"]


def delivered_readings(run: Any) -> pl.DataFrame:
    """Readings as the processor receives them, in delivery order (``deliver_at_ms``)."""
    messages = run.messages.filter(pl.col("fault").is_in(DELIVERED)).select(
        "msg_id", "deliver_at_ms"
    )
    return (
        run.readings.join(messages, on="msg_id", how="inner")
        .sort("deliver_at_ms", "msg_id", "metric", "ts_ms")
        .with_columns(seq=pl.lit(-1, pl.Int64), received_at_ms=pl.col("deliver_at_ms"))
        .select(*READING_SCHEMA, "deliver_at_ms")
    )


def run_windows(
    readings: pl.DataFrame,
    params: EventTimeParams,
    *,
    poll_ms: int = 3_600_000,
    idle_ms: int = 900_000,
) -> pl.DataFrame:
    """Every window result the kernels emit, latest revision per window."""
    state = EventTimeState()
    out = []
    poll = readings["deliver_at_ms"] // poll_ms
    for (_,), batch in readings.with_columns(_poll=poll).group_by("_poll", maintain_order=True):
        now_ms = int(batch["deliver_at_ms"].max())  # type: ignore[arg-type]
        result = step(state, batch.select(list(READING_SCHEMA)), now_ms=now_ms, params=params)
        idle = close_idle(result.state, now_ms=now_ms, idle_ms=idle_ms, params=params)
        state = idle.state
        out += [result.windows, idle.windows]
    last = close_idle(state, now_ms=now_ms, idle_ms=0, params=params)
    windows = pl.concat([*out, last.windows])
    return windows.sort([*WINDOW_KEY, "revision"]).group_by(WINDOW_KEY, maintain_order=True).last()


def scored_hours(
    windows: pl.DataFrame,
    scn: Any,
    *,
    baseline_days: int = 28,
    hourly_min_days: int | None = None,
) -> pl.DataFrame:
    """Hourly windows of the reporting period with baseline, delta and avoided kgCO2e.

    ``hourly_min_days`` lowers the temperature model's minimum baseline length (CalTRACK: 365
    days, so on the demo's 28 days only time-of-week fits); None keeps the provider's rule.
    """
    registry = scn.registry
    start = scn.intervention_ms
    period = (start - baseline_days * DAY_MS, start)
    hours = windows.filter(pl.col("width_s") == 3600)
    factors = load_factors()
    parts = []
    for tenant, pilot in registry.pilots.items():
        city = registry.cities[pilot.city]
        rules = pilot_rules(pilot, city)
        mine = hours.filter(pl.col("tenant") == tenant)
        reporting = mine.filter(pl.col("bucket_start_ms") >= start)
        if reporting.is_empty():
            continue
        temps = _city_temperature(hours, registry, pilot.city)
        models: list[FittedModel] = []
        for metric, rule in rules.items():
            if rule.saving == "baseline_minus_actual":
                models += _fit(mine, metric, city, period, temps, hourly_min_days)
        predicted = predict_windows(
            models,
            reporting.select("device_id", "metric", "bucket_start_ms", "width_s"),
            tz=city.tz,
            temperature=temps,
        )
        annotated = reporting.with_columns(baseline=predicted["baseline"])
        parts.append(emission_deltas(annotated, rules=rules, factors=factors))
    return pl.concat(parts)


def _city_temperature(hours: pl.DataFrame, registry: Any, city: str) -> pl.DataFrame:
    tenants = [t for t, p in registry.pilots.items() if p.city == city]
    return (
        hours.filter(pl.col("tenant").is_in(tenants) & (pl.col("metric") == "weather.temperature"))
        .group_by(ts_ms="bucket_start_ms")
        .agg(temperature=pl.col("actual").mean())
        .sort("ts_ms")
        .pipe(despike)  # as the provider reads it
    )


def _fit(
    hours: pl.DataFrame,
    metric: str,
    city: Any,
    period: tuple[int, int],
    temps: pl.DataFrame,
    hourly_min_days: int | None,
) -> list[FittedModel]:
    """Per device the usable model of lowest CV(RMSE), as the provider chooses it."""
    tz = city.tz
    rows = hours.filter(
        (pl.col("metric") == metric) & pl.col("bucket_start_ms").is_between(*period, closed="left")
    )
    if rows.is_empty():
        return []
    history_rows = rows.select("device_id", ts_ms="bucket_start_ms", usage="actual").join(
        temps, on="ts_ms", how="left"
    )

    def history(_ids: object, _m: str, _a: int, _b: int) -> pl.DataFrame:
        return history_rows

    devices = rows["device_id"].unique().sort().to_list()
    kw: dict[str, Any] = {"device_ids": devices, "metric": metric, "tz": tz, "period": period}
    candidates = fit_devices(history, method="tow", **kw)
    if temps.height:
        if hourly_min_days is None:
            candidates += fit_devices(history, method="hourly", **kw)
        else:
            params = HourlyParams(min_days=hourly_min_days)
            candidates += fit_hourly(
                history_rows, tz=tz, metric=metric, period=period, params=params
            )
    if metric in DARKNESS_METRICS and city.lat is not None and city.lon is not None:
        candidates += fit_daylight(
            history_rows, metric=metric, tz=tz, period=period, lat=city.lat, lon=city.lon
        )
    return list(best_models(candidates).values())


def accuracy(scored: pl.DataFrame, truth: pl.DataFrame, scn: Any) -> pl.DataFrame:
    """Avoided amount and kgCO2e per pilot and metric over the reporting period, beside the truth.

    Truth rows count from the intervention's local date on (the truth counts mode-shift km on
    every day); PV generation counts as avoided grid electricity in both.
    """
    ours = scored.group_by("tenant", "metric").agg(
        avoided=pl.col("delta").sum(),
        co2e_kg=pl.col("avoided_co2e_kg").sum(),
        masked_share=pl.col("masked").mean(),
    )
    cities = {c: city.tz for c, city in scn.registry.cities.items()}
    starts = pl.DataFrame(
        {
            "city": list(cities),
            "first": [
                pl.select(
                    pl.from_epoch(pl.lit(scn.intervention_ms), time_unit="ms")
                    .dt.replace_time_zone("UTC")
                    .dt.convert_time_zone(tz)
                    .dt.date()
                ).item()
                for tz in cities.values()
            ],
        }
    )
    true = (
        truth.join(starts, on="city")
        .filter(pl.col("date") >= pl.col("first"))
        .group_by("tenant", "metric")
        .agg(true_avoided=pl.col("avoided").sum(), true_co2e_kg=pl.col("avoided_co2e_kg").sum())
    )
    return (
        true.join(ours, on=["tenant", "metric"], how="left")
        .with_columns(
            co2e_error=(pl.col("co2e_kg") - pl.col("true_co2e_kg")) / pl.col("true_co2e_kg").abs(),
        )
        .sort("tenant", "metric")
    )
