"""Baseline prediction of stream windows: model per (device, metric), input order, widths."""

from __future__ import annotations

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal, assert_series_equal

from processors.baselines import FittedModel, predict_tow, predict_windows

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday
TZ = "Europe/Paris"


def _tow(device: str, metric: str, scale: float) -> FittedModel:
    return FittedModel(
        method="tow",
        device_id=device,
        metric=metric,
        period_start_ms=0,
        period_end_ms=T0,
        params={"means": (scale * np.arange(168)).tolist()},
        metrics=None,
        sufficient=True,
    )


def _windows(rows: list[tuple[str, str, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "device_id": pl.String,
            "metric": pl.String,
            "width_s": pl.Int64,
            "bucket_start_ms": pl.Int64,
        },
        orient="row",
    )


def test_each_window_gets_its_own_metrics_model_in_input_order() -> None:
    models = [_tow("a", "m1", 1.0), _tow("a", "m2", 10.0), _tow("b", "m1", 100.0)]
    windows = _windows(
        [
            ("b", "m1", 3600, T0),
            ("a", "m2", 900, T0 + 900_000),
            ("a", "m1", 3600, T0 + 3_600_000),
            ("c", "m1", 3600, T0),  # no model
            ("a", "m3", 3600, T0),  # no model for this metric
        ]
    )
    result = predict_windows(models, windows, tz=TZ)
    # Paris is UTC+1 in January: T0 is Monday 01:00 local, hour of week 1
    assert result["baseline"].to_list() == [100.0, 10.0 / 4, 2.0, None, None]
    ids = [models[2].model_id, models[1].model_id, models[0].model_id, "", ""]
    assert result["baseline_model_id"].to_list() == ids
    assert_frame_equal(result.select(windows.columns), windows)


def test_time_of_week_windows_match_predict_tow() -> None:
    models = [_tow(d, "m", s) for d, s in (("a", 0.5), ("b", 2.0))]
    starts = T0 + np.arange(0, 40 * 3_600_000, 900_000)
    windows = _windows(
        [(d, "m", w, int(t)) for d in ("b", "a") for w in (900, 3600) for t in starts[:: w // 900]]
    )
    result = predict_windows(models, windows, tz=TZ)
    expected = predict_tow(models, windows.with_columns(ts_ms=pl.col("bucket_start_ms")), tz=TZ)
    assert_series_equal(result["baseline"], expected["baseline"], check_exact=True)
    assert result["baseline_model_id"].to_list() == expected["baseline_model_id"].to_list()


def test_no_models_or_no_windows() -> None:
    windows = _windows([("a", "m", 3600, T0)])
    result = predict_windows([], windows, tz=TZ)
    assert result["baseline"].to_list() == [None]
    assert result["baseline_model_id"].to_list() == [""]
    assert predict_windows([_tow("a", "m", 1.0)], windows.clear(), tz=TZ).height == 0
