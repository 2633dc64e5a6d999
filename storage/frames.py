"""Columnar inputs of the writer: expected columns, coercion, and the checks that keep values
PostgreSQL must not receive (NUL bytes in text, NaN or infinite numbers, nulls) out of the database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from storage.errors import InvalidBatch

# readings: one row per reading
READINGS: dict[str, pl.DataType] = {
    "ts_ms": pl.Int64(),  # event time, UTC ms
    "tenant": pl.String(),
    "device_id": pl.String(),
    "metric": pl.String(),
    "value": pl.Float64(),  # canonical unit, finite
    "seq": pl.Int64(),  # -1 when none
    "received_at_ms": pl.Int64(),  # UTC ms
    "quality": pl.Int16(),  # flags
}
READINGS_DEFAULTS: dict[str, Any] = {"seq": -1, "quality": 0}

# window results: one row per window
WINDOWS: dict[str, pl.DataType] = {
    "bucket_start_ms": pl.Int64(),  # UTC ms
    "width_s": pl.Int32(),
    "tenant": pl.String(),
    "device_id": pl.String(),
    "metric": pl.String(),
    "actual": pl.Float64(),
    "baseline": pl.Float64(),
    "delta": pl.Float64(),
    "factor": pl.Float64(),
    "avoided_co2e_kg": pl.Float64(),
    "coverage": pl.Float64(),  # 0..1
    "baseline_model_id": pl.String(),
    "factor_id": pl.String(),
}
WINDOW_KEY = ("device_id", "metric", "width_s", "bucket_start_ms")

# rejections: one row per dead letter
REJECTIONS: dict[str, pl.DataType] = {
    "received_at_ms": pl.Int64(),
    "tenant": pl.String(),
    "device_id": pl.String(),
    "reason": pl.String(),
    "topic": pl.String(),
    "detail": pl.String(),
    "gateway_id": pl.String(),
    "payload": pl.Binary(),  # excerpt of the original bytes
    "payload_size": pl.Int32(),
    "msg_id": pl.String(),  # publisher's message id ("" when none, and for processor rejections)
}
REJECTIONS_DEFAULTS: dict[str, Any] = {
    "device_id": "",
    "detail": "",
    "gateway_id": "",
    "msg_id": "",
}

Columnar = pl.DataFrame | Mapping[str, Any]


def conform(
    name: str,
    data: Columnar,
    schema: dict[str, pl.DataType],
    defaults: Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """``data`` (a DataFrame or a dict of arrays) with exactly ``schema``'s columns, checked.

    Raises InvalidBatch for a missing column, a value that does not cast, a null, a NUL byte in
    text or a non-finite float, naming the column.
    """
    df = data if isinstance(data, pl.DataFrame) else pl.DataFrame(dict(data))
    defaults = defaults or {}
    exprs = []
    for col in schema:
        if col in df.columns:
            exprs.append(pl.col(col))
        elif col in defaults:
            exprs.append(pl.lit(defaults[col]).alias(col))
        else:
            msg = f"{name}: column {col!r} is missing (expected {list(schema)})"
            raise InvalidBatch(msg)
    try:
        df = df.select(exprs).cast(schema, strict=True)  # type: ignore[arg-type]
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        msg = f"{name}: a column does not have the expected type: {exc}"
        raise InvalidBatch(msg) from exc
    _check(name, df)
    return df


def _check(name: str, df: pl.DataFrame) -> None:
    if df.height == 0:
        return
    nulls = df.null_count().row(0, named=True)
    for col, count in nulls.items():
        if count:
            msg = f"{name}: column {col!r} has {count} null values"
            raise InvalidBatch(msg)
    for col, dtype in df.schema.items():
        if dtype == pl.String():
            bad = df[col].str.contains("\x00", literal=True)
            if bad.any():
                msg = f"{name}: column {col!r} holds a NUL byte at row {bad.arg_true()[0]}"
                raise InvalidBatch(msg)
        elif dtype == pl.Float64():
            ok = np.isfinite(df[col].to_numpy())
            if not ok.all():
                row = int(np.argmin(ok))
                msg = f"{name}: column {col!r} holds a non-finite value at row {row}"
                raise InvalidBatch(msg)
