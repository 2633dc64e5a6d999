"""The fault log: one row per injected fault."""

from __future__ import annotations

import polars as pl

FAULT_LOG_SCHEMA = {
    "kind": pl.String,  # fault kind, e.g. spike, late, broken_json
    "tenant": pl.String,  # owner of the device
    "device_id": pl.String,
    "metric": pl.String,  # affected metric ("" for a whole message)
    "ts_ms": pl.Int64,  # event time of the affected reading (for messages: latest in it), UTC ms
    "msg_id": pl.String,  # message that carries (or would have carried) it
    "detail": pl.String,  # what exactly was done
}


def empty_log() -> pl.DataFrame:
    """A fault log with no rows."""
    return pl.DataFrame(schema=FAULT_LOG_SCHEMA)


def log_rows(frame: pl.DataFrame, kind: str | pl.Expr, detail: pl.Expr) -> pl.DataFrame:
    """Fault-log rows for the rows of ``frame`` (which has tenant, device_id, ts_ms, msg_id)."""
    kind_expr = pl.lit(kind) if isinstance(kind, str) else kind
    metric = pl.col("metric") if "metric" in frame.columns else pl.lit("")
    return frame.select(
        kind=kind_expr,
        tenant=pl.col("tenant"),
        device_id=pl.col("device_id"),
        metric=metric,
        ts_ms=pl.col("ts_ms"),
        msg_id=pl.col("msg_id"),
        detail=detail,
    ).cast(FAULT_LOG_SCHEMA)  # type: ignore[arg-type]
