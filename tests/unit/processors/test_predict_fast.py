"""Fast paths of ``predict_windows`` and ``emission_deltas`` against row-by-row references.

Random windows around DST transitions (Paris, Helsinki, and Kolkata's half-hour offset), whole
quarters and odd milliseconds, short and long spans, windows without a model, other methods'
models, null keys and baselines, windows across factor validity edges, mobility rules.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pilotstream.registry import load_registry
from processors.baselines import FittedModel, predict_windows
from processors.baselines.predict import _CALENDARS
from processors.factors import FactorTable, read_factor_csv, table_from_frame
from processors.kernels import MetricRule, emission_deltas, pilot_rules, window_factors
from processors.kernels import flags as qf
from processors.kernels.emissions import EVENT_MASKING, EVENT_METRICS, _look_up

QUARTER_MS = 900_000
SPRING_PARIS = 1_711_846_800_000  # 2024-03-31T01:00Z, clocks go forward in Europe
AUTUMN_PARIS = 1_729_990_800_000  # 2024-10-27T01:00Z, clocks go back
DEVICES = [f"d{i}" for i in range(12)]
METRICS = ["m1", "m2"]


def _model(method: str, device: str, metric: str, rng: np.random.Generator) -> FittedModel:
    params: dict[str, object]
    if method == "tow":
        params = {"means": rng.uniform(0.0, 5.0, 168).round(3).tolist()}
    else:
        params = {"mu": 1.0, "beta_h": 0.1, "hbp": 15.0, "beta_c": 0.0, "cbp": 20.0}
    return FittedModel(
        method=method,
        device_id=device,
        metric=metric,
        period_start_ms=0,
        period_end_ms=1,
        params=params,
        metrics=None,
        sufficient=True,
    )


def _models(rng: np.random.Generator, metrics: list[str]) -> list[FittedModel]:
    out = []
    for device in DEVICES:
        for metric in metrics:
            if rng.random() < 0.2:
                continue  # no model
            out.append(_model("tow" if rng.random() < 0.8 else "daily", device, metric, rng))
            if rng.random() < 0.1:  # a repeated key: its first model counts
                out.append(_model("tow", device, metric, rng))
    return out


def _starts(rng: np.random.Generator, n: int, around: int, kind: str) -> np.ndarray:
    if kind == "quarters":  # the stream's case: whole quarters a few hours apart
        return around + rng.integers(-16, 16, n) * QUARTER_MS
    if kind == "long":  # beyond the dense calendar
        return around + rng.integers(-20_000, 20_000, n) * QUARTER_MS
    return around + rng.integers(-3_600_000 * 6, 3_600_000 * 6, n)  # any millisecond


def _windows(rng: np.random.Generator, n: int, around: int, kind: str) -> pl.DataFrame:
    device = rng.choice([*DEVICES, "other"], n).astype(object)
    metric = rng.choice([*METRICS, "m3"], n).astype(object)
    device[rng.random(n) < 0.03] = None
    metric[rng.random(n) < 0.03] = None
    frame = pl.DataFrame(
        {
            "device_id": pl.Series(device.tolist(), dtype=pl.String),
            "metric": pl.Series(metric.tolist(), dtype=pl.String),
            "width_s": rng.choice([900, 3600], n),
            "bucket_start_ms": _starts(rng, n, around, kind),
        }
    )
    return frame.sort("device_id", "metric") if rng.random() < 0.5 else frame


def _reference_predict(models: list[FittedModel], windows: pl.DataFrame, tz: str) -> pl.DataFrame:
    first: dict[tuple[str, str], FittedModel] = {}
    for m in models:
        first.setdefault((m.device_id, m.metric), m)
    zone = ZoneInfo(tz)
    baseline: list[float | None] = []
    ids: list[str] = []
    for device, metric, width, start in windows.select(
        "device_id", "metric", "width_s", "bucket_start_ms"
    ).iter_rows():
        model = first.get((device, metric))
        ids.append("" if model is None else model.model_id)
        if model is None or model.method != "tow":
            baseline.append(None)  # daily models without temperature: no baseline
            continue
        local = datetime.fromtimestamp(start / 1000, UTC).astimezone(zone)
        hourly = model.params["means"][local.weekday() * 24 + local.hour]
        baseline.append(hourly * (width / 3600))
    return windows.with_columns(
        baseline=pl.Series(baseline, dtype=pl.Float64),
        baseline_model_id=pl.Series(ids, dtype=pl.String),
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    ("tz", "around"),
    [
        ("Europe/Paris", SPRING_PARIS),
        ("Europe/Paris", AUTUMN_PARIS),
        ("Europe/Helsinki", SPRING_PARIS),
        ("Europe/Helsinki", AUTUMN_PARIS),
        ("Asia/Kolkata", SPRING_PARIS),
    ],
)
@pytest.mark.parametrize("kind", ["quarters", "long", "milliseconds"])
@pytest.mark.parametrize("metrics", [["m1"], METRICS])
def test_predict_windows_matches_row_by_row_reference(
    seed: int, tz: str, around: int, kind: str, metrics: list[str]
) -> None:
    rng = np.random.default_rng(seed)
    models = _models(rng, metrics)
    for n in (0, 1, 300):
        windows = _windows(rng, n, around, kind)
        result = predict_windows(models, windows, tz=tz)
        assert_frame_equal(result, _reference_predict(models, windows, tz), check_exact=True)


@pytest.mark.parametrize("seed", range(4))
def test_windows_that_all_have_time_of_week_models(seed: int) -> None:
    rng = np.random.default_rng(seed)
    models = [_model("tow", d, "m1", rng) for d in DEVICES]
    models[3].params["means"][::5] = [float("nan")] * 34  # no prediction: a null baseline
    for kind in ("quarters", "milliseconds"):
        windows = _windows(rng, 300, AUTUMN_PARIS, kind).with_columns(
            device_id=pl.lit("d3") if seed == 0 else pl.col("device_id").fill_null("d1"),
            metric=pl.lit("m1"),
        )
        windows = windows.with_columns(
            device_id=pl.when(pl.col("device_id") == "other")
            .then(pl.lit("d2"))
            .otherwise("device_id")
        )
        result = predict_windows(models, windows, tz="Europe/Helsinki")
        expected = _reference_predict(models, windows, "Europe/Helsinki")
        expected = expected.with_columns(baseline=pl.col("baseline").fill_nan(None))
        assert_frame_equal(result, expected, check_exact=True)


def test_predict_windows_reuses_tables_without_mixing_model_lists() -> None:
    rng = np.random.default_rng(1)
    windows = _windows(rng, 200, SPRING_PARIS, "quarters")
    for metrics in (["m1"], METRICS, ["m1"], ["m2"]):
        models = _models(rng, metrics)
        for change in ("none", "replace", "append", "none"):  # the same list, changed in place
            if change == "replace":
                models[0] = _model("tow", models[0].device_id, models[0].metric, rng)
            elif change == "append":
                models.append(_model("tow", "other", metrics[0], rng))
            result = predict_windows(models, windows, tz="Europe/Paris")
            expected = _reference_predict(models, windows, "Europe/Paris")
            assert_frame_equal(result, expected, check_exact=True)


@pytest.mark.parametrize("tz", ["Europe/Paris", "Europe/Helsinki"])
def test_predict_windows_follow_a_stream_across_weeks_and_late_windows(tz: str) -> None:
    rng = np.random.default_rng(5)
    models = _models(rng, ["m1"])
    # polls days apart across both 2024 DST changes, late windows a week back, jumps
    for day in [*range(-20, 40, 3), 40, 41, 5, -40, 200, 190, 215, 216]:
        around = SPRING_PARIS + day * 86_400_000
        windows = _windows(rng, 200, around, "quarters")
        if rng.random() < 0.5:
            windows = windows.with_columns(pl.col("bucket_start_ms") - 8 * 96 * QUARTER_MS)
        result = predict_windows(models, windows, tz=tz)
        assert_frame_equal(result, _reference_predict(models, windows, tz), check_exact=True)


@pytest.mark.parametrize("edge", [-1, 0, 1])
@pytest.mark.parametrize("side", ["before", "after"])
def test_predict_windows_at_the_edges_of_the_kept_calendar(edge: int, side: str) -> None:
    rng = np.random.default_rng(6)
    models = _models(rng, ["m1"])
    week = 7 * 96 * QUARTER_MS
    first = SPRING_PARIS - 3 * QUARTER_MS
    # a week before the first poll's first quarter to two weeks after its last are kept
    probe = (-week if side == "before" else 2 * week) + edge * QUARTER_MS
    _CALENDARS.clear()
    for offset in (0, probe):
        windows = _windows(rng, 50, 0, "quarters").with_columns(
            bucket_start_ms=first + offset + pl.int_range(50) % 4 * QUARTER_MS
        )
        result = predict_windows(models, windows, tz="Europe/Lisbon")
        expected = _reference_predict(models, windows, "Europe/Lisbon")
        assert_frame_equal(result, expected, check_exact=True)


ANNUAL_FR = 1_704_067_200_000  # 2024-01-01T00:00Z: grid-fr-2024 starts, an hourly series too
SERIES = "\n".join(
    [
        "factor_id,scope,unit,value,basis,source,year,valid_from,valid_to",
        "grid-fr-2024,grid:FR,kgCO2e/kWh,0.05,lifecycle,s,2024,2024-01-01,",
        *(
            f"fr-h{h},grid:FR,kgCO2e/kWh,{0.03 + h / 1000},lifecycle,s,2024,"
            f"2024-01-01T{h:02d}:00:00Z,2024-01-01T{h + 1:02d}:00:00Z"
            for h in range(2, 5)
        ),
    ]
)


def _factors() -> FactorTable:
    """The seed (2023 annual, mobility) plus a 2024 annual factor and an hourly series."""
    seed = resources.files("pilotstream").joinpath("data/emission_factors.csv").read_bytes()
    return table_from_frame(pl.concat([read_factor_csv(seed), read_factor_csv(SERIES.encode())]))


def _reference_emissions(
    windows: pl.DataFrame, rules: dict[str, MetricRule], factors: FactorTable
) -> pl.DataFrame:
    rows = []
    looked_up: dict[tuple[object, int], tuple[float | None, str]] = {}  # the slow exact lookup
    for metric, start, actual, baseline, flags in windows.select(
        "metric", "bucket_start_ms", "actual", "baseline", "flags"
    ).iter_rows():
        rule = rules.get(metric) if metric is not None else None
        if rule is not None and (rule.terms, start) not in looked_up:
            looked_up[rule.terms, start] = _look_up([(rule.terms, start)], factors)[0]
        factor, factor_id = (None, "") if rule is None else looked_up[rule.terms, start]
        if rule is None:
            raw, known = None, False
        elif rule.saving == "actual":
            raw, known = actual, actual is not None
        else:
            known = actual is not None and baseline is not None
            raw = baseline - actual if known else None
        bits = EVENT_MASKING if metric in EVENT_METRICS else qf.MASKING
        masked = bool((flags or 0) & bits) or not known or factor is None
        delta = 0.0 if masked else raw
        value = 0.0 if factor is None else factor
        rows.append((value, factor_id, masked, delta, delta * value, factor))
    return pl.DataFrame(
        rows,
        schema={
            "factor": pl.Float64,
            "factor_id": pl.String,
            "masked": pl.Boolean,
            "delta": pl.Float64,
            "avoided_co2e_kg": pl.Float64,
            "_factor": pl.Float64,  # null: unknown
        },
        orient="row",
    )


def _emission_windows(rng: np.random.Generator, n: int, metrics: list[str]) -> pl.DataFrame:
    metric = rng.choice([*metrics, "unknown"], n).astype(object)
    metric[rng.random(n) < 0.03] = None
    actual = rng.uniform(0, 10, n).round(2).astype(object)
    actual[rng.random(n) < 0.05] = None
    baseline = rng.uniform(0, 10, n).round(2).astype(object)
    baseline[rng.random(n) < 0.1] = None
    flags = rng.choice([0, 0, 0, qf.GAP, qf.LOW_COVERAGE, 1 << 20], n).astype(object)
    flags[rng.random(n) < 0.03] = None
    kind = rng.integers(3)
    if kind == 0:  # quarters across the hourly series and the annual edge
        start = ANNUAL_FR + rng.integers(-12, 30, n) * QUARTER_MS
    elif kind == 1:  # any millisecond
        start = ANNUAL_FR + rng.integers(-3_600_000 * 3, 3_600_000 * 6, n)
    else:  # years apart
        start = ANNUAL_FR + rng.integers(-800, 800, n) * 86_400_000
    return pl.DataFrame(
        {
            "metric": pl.Series(metric.tolist(), dtype=pl.String),
            "bucket_start_ms": start,
            "actual": pl.Series(actual.tolist(), dtype=pl.Float64),
            "baseline": pl.Series(baseline.tolist(), dtype=pl.Float64),
            "flags": pl.Series(flags.tolist(), dtype=pl.Int64),
        }
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tenant", ["paris-energy-1", "paris-mobility-1", "stavanger-mobility-1"])
def test_emission_deltas_match_row_by_row_reference(seed: int, tenant: str) -> None:
    registry = load_registry()
    pilot = registry.pilots[tenant]
    rules = pilot_rules(pilot, registry.cities[pilot.city])
    factors = _factors()
    rng = np.random.default_rng(seed)
    for n in (0, 1, 200):
        windows = _emission_windows(rng, n, list(rules))
        if rng.random() < 0.5:
            windows = windows.sort("metric", "bucket_start_ms")
        result = emission_deltas(windows, rules=rules, factors=factors)
        expected = _reference_emissions(windows, rules, factors)
        assert_frame_equal(result, pl.concat([windows, expected.drop("_factor")], how="horizontal"))
        assert_frame_equal(
            window_factors(windows, rules, factors),
            expected.select(factor="_factor", factor_id="factor_id"),
        )


@pytest.mark.parametrize(
    "metric", ["energy.active.import", "energy.unknown_scope", "no.rule", None]
)
@pytest.mark.parametrize("spread", [0, QUARTER_MS, 1])
def test_emission_deltas_of_one_metric_match_row_by_row_reference(
    metric: str | None, spread: int
) -> None:
    rules = {
        "energy.active.import": MetricRule(
            "energy.active.import", "baseline_minus_actual", (("grid:FR", 1.0),)
        ),
        "energy.unknown_scope": MetricRule(
            "energy.unknown_scope", "baseline_minus_actual", (("grid:XX", 1.0),)
        ),
    }
    factors = _factors()
    rng = np.random.default_rng(3)
    windows = _emission_windows(rng, 300, list(rules)).with_columns(
        metric=pl.lit(metric, pl.String),
        bucket_start_ms=ANNUAL_FR + 7 * QUARTER_MS + pl.int_range(300) % 5 * spread,
    )
    result = emission_deltas(windows, rules=rules, factors=factors)
    expected = _reference_emissions(windows, rules, factors)
    assert_frame_equal(result, pl.concat([windows, expected.drop("_factor")], how="horizontal"))
