"""Vectorised validation of the readings of a batch of decoded messages.

All checks run as numpy operations over the batch's columns; lookups (metric, unit, device id,
tenant) run once per distinct value, never once per reading. Units are converted to canonical here,
once. The first failing check names a reading's reason, in this order: ``non_finite``,
``wrong_tenant``, ``bad_device_id``, ``unknown_metric``, ``bad_unit``, ``future_ts``, ``too_old``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.decoders.base import (
    BAD_DEVICE_ID,
    BAD_UNIT,
    FUTURE_TS,
    NON_FINITE,
    TOO_OLD,
    UNKNOWN_METRIC,
    WRONG_TENANT,
    Decoded,
)
from pilotstream.vocab import METRICS, conversion

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
DIMENSIONLESS = "count"  # the only canonical unit a reading may leave out


@dataclass(frozen=True, slots=True)
class Limits:
    """Time window a reading's event time must fall in, relative to its receive time."""

    future_skew_ms: int  # readings later than receive time + this are future_ts
    horizon_ms: int  # readings earlier than receive time - this are too_old


@dataclass(frozen=True, slots=True)
class Checked:
    """A batch's readings after validation, columns aligned; ``reason == ""`` where accepted."""

    msg: npt.NDArray[np.int64]  # index of the source message in the batch
    record_index: npt.NDArray[np.int64]  # index of the source record inside its message
    device_id: npt.NDArray[np.object_]
    metric: npt.NDArray[np.object_]
    ts_ms: npt.NDArray[np.int64]  # UTC ms (0 where not finite or beyond int64)
    value: npt.NDArray[np.float64]  # canonical unit (as sent where refused)
    unit: npt.NDArray[np.object_]  # canonical unit ("" where refused)
    kind: npt.NDArray[np.object_]  # counter | gauge | delta ("" where refused)
    seq: npt.NDArray[np.int64]
    reason: npt.NDArray[np.object_]  # "" when accepted, else the reason code

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        """Mask of accepted readings."""
        return self.reason == ""

    def __len__(self) -> int:
        return len(self.reason)


def validate(
    decoded: Sequence[Decoded],
    tenants: Sequence[str],
    received_at_ms: Sequence[int],
    known_tenants: Collection[str],
    limits: Limits,
) -> Checked:
    """Validate and convert the readings of ``decoded[i]`` (tenant ``tenants[i]``, received at
    ``received_at_ms[i]``) in one vectorised pass."""
    counts = np.fromiter((len(d) for d in decoded), dtype=np.int64, count=len(decoded))
    msg = np.repeat(np.arange(len(decoded), dtype=np.int64), counts)
    device = _concat([d.device_id for d in decoded])
    metric = _concat([d.metric for d in decoded])
    unit = _concat([d.unit for d in decoded])
    n = int(counts.sum())
    ts = _flat([d.ts_ms for d in decoded], np.float64, n)
    value = _flat([d.value for d in decoded], np.float64, n)
    seq = _flat([d.seq for d in decoded], np.int64, n)
    rec = _flat([d.record_index for d in decoded], np.int64, n)

    tenant_ok = np.array([t in known_tenants for t in tenants], dtype=bool)[msg]
    device_ok = _per_distinct(device, lambda d: DEVICE_ID.match(d) is not None)
    metric_ok = _per_distinct(metric, lambda m: m in METRICS)
    scale, offset, unit_ok = _conversions(metric, unit)
    with np.errstate(over="ignore", invalid="ignore"):
        converted = value * scale + offset
    now = np.asarray(received_at_ms, dtype=np.float64)[msg]
    finite = np.isfinite(value) & np.isfinite(ts) & np.isfinite(converted)
    with np.errstate(invalid="ignore"):
        future = ts > now + limits.future_skew_ms
        old = ts < now - limits.horizon_ms
    reason = np.select(
        [~finite, ~tenant_ok, ~device_ok, ~metric_ok, ~unit_ok, future, old],
        [NON_FINITE, WRONG_TENANT, BAD_DEVICE_ID, UNKNOWN_METRIC, BAD_UNIT, FUTURE_TS, TOO_OLD],
        default="",
    ).astype(object)
    ok = reason == ""
    with np.errstate(invalid="ignore"):
        fits_int = (
            np.abs(ts) < 2.0**62
        )  # NaN compares False; the window check already bounds ok rows
    canonical_unit = _per_distinct_map(metric, lambda m: METRICS[m].unit if m in METRICS else "")
    kind = _per_distinct_map(metric, lambda m: METRICS[m].kind if m in METRICS else "")
    return Checked(
        msg=msg,
        record_index=rec,
        device_id=device,
        metric=metric,
        ts_ms=np.rint(np.where(fits_int, ts, 0.0)).astype(np.int64),
        value=np.where(ok, converted, value),
        unit=np.where(ok, canonical_unit, ""),
        kind=np.where(ok, kind, ""),
        seq=seq,
        reason=reason,
    )


def _flat(columns: list[list[float]] | list[list[int]], dtype: type, n: int) -> npt.NDArray[Any]:
    return np.fromiter(chain.from_iterable(columns), dtype=dtype, count=n)


def _concat(columns: list[list[str]]) -> npt.NDArray[np.object_]:
    out = np.empty(sum(len(c) for c in columns), dtype=object)
    i = 0
    for c in columns:
        out[i : i + len(c)] = c
        i += len(c)
    return out


def _distinct(col: npt.NDArray[np.object_]) -> tuple[list[str], npt.NDArray[np.intp]]:
    if len(col) == 0:
        return [], np.zeros(0, dtype=np.intp)
    uniq, inverse = np.unique(col.astype(str), return_inverse=True)
    return [str(u) for u in uniq], inverse.reshape(-1)


def _per_distinct(col: npt.NDArray[np.object_], pred: object) -> npt.NDArray[np.bool_]:
    uniq, inverse = _distinct(col)
    table = np.array([pred(u) for u in uniq], dtype=bool)  # type: ignore[operator]
    return table[inverse] if len(uniq) else np.zeros(0, dtype=bool)


def _per_distinct_map(col: npt.NDArray[np.object_], fn: object) -> npt.NDArray[np.object_]:
    uniq, inverse = _distinct(col)
    table = np.array([fn(u) for u in uniq] or [""], dtype=object)  # type: ignore[operator]
    return table[inverse]


def _conversions(
    metric: npt.NDArray[np.object_], unit: npt.NDArray[np.object_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """(scale, offset, fits) per reading, from a small table over distinct metrics x units."""
    metrics, mi = _distinct(metric)
    units, ui = _distinct(unit)
    scale = np.ones((max(len(metrics), 1), max(len(units), 1)))
    offset = np.zeros_like(scale)
    fits = np.zeros(scale.shape, dtype=bool)
    for i, m in enumerate(metrics):
        canonical = METRICS[m].unit if m in METRICS else None
        for j, u in enumerate(units):
            conv = conversion(u, m) if u or canonical != DIMENSIONLESS else (1.0, 0.0)
            if conv is not None:
                scale[i, j], offset[i, j], fits[i, j] = conv[0], conv[1], True
    return scale[mi, ui], offset[mi, ui], fits[mi, ui]
