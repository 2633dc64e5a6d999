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
from itertools import chain, repeat
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
from pilotstream.vocab import METRICS, UNITS, conversion

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
    pos: npt.NDArray[np.int64]  # index of the reading inside its message's columns
    record_index: npt.NDArray[np.int64]  # index of the source record inside its message
    device_id: npt.NDArray[np.object_]  # per MESSAGE: the device of message i
    metric: npt.NDArray[np.object_]  # known metric name ("" where unknown)
    ts_ms: npt.NDArray[np.int64]  # UTC ms (0 where not finite or beyond int64)
    value: npt.NDArray[np.float64]  # canonical unit (as sent where refused)
    unit: npt.NDArray[np.object_]  # canonical unit ("" where refused)
    kind: npt.NDArray[np.object_]  # counter | gauge | delta ("" where refused)
    seq: npt.NDArray[np.int64]
    reason: npt.NDArray[np.object_]  # "" when accepted, else the reason code

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        """Mask of accepted readings."""
        return np.asarray(self.reason == "", dtype=bool)

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
    n = int(counts.sum())
    ts = _flat([d.ts_ms for d in decoded], np.float64, n)
    value = _flat([d.value for d in decoded], np.float64, n)
    seq = _flat([d.seq for d in decoded], np.int64, n)
    rec = _flat([d.record_index for d in decoded], np.int64, n)
    # Codes into the fixed vocabulary: C-level dict look-ups, no per-reading Python code.
    metric_code = _codes([d.metric for d in decoded], _METRIC_CODE, n)
    unit_code = _codes([d.unit for d in decoded], _UNIT_CODE, n)
    devices = np.array([d.device_id for d in decoded] or [""], dtype=object)[: len(decoded)]

    tenant_ok = np.array([t in known_tenants for t in tenants], dtype=bool)[msg]
    device_ok = np.array([_device_ok(d) for d in devices], dtype=bool)[msg]
    metric_ok = metric_code < len(_METRIC_NAMES)
    unit_ok = _FITS[metric_code, unit_code]
    with np.errstate(over="ignore", invalid="ignore"):
        converted = value * _SCALE[metric_code, unit_code] + _OFFSET[metric_code, unit_code]
    now = np.asarray(received_at_ms, dtype=np.float64)[msg]
    finite = np.isfinite(value) & np.isfinite(ts) & np.isfinite(converted)
    with np.errstate(invalid="ignore"):
        future = ts > now + limits.future_skew_ms
        old = ts < now - limits.horizon_ms
        fits_int = np.abs(ts) < 2.0**62  # NaN compares False
    reason = np.select(
        [~finite, ~tenant_ok, ~device_ok, ~metric_ok, ~unit_ok, future, old],
        [NON_FINITE, WRONG_TENANT, BAD_DEVICE_ID, UNKNOWN_METRIC, BAD_UNIT, FUTURE_TS, TOO_OLD],
        default="",
    ).astype(object)
    ok = reason == ""
    names = _METRIC_NAMES_OR_UNKNOWN[metric_code]
    starts = np.cumsum(counts) - counts
    return Checked(
        msg=msg,
        pos=np.arange(n, dtype=np.int64) - np.repeat(starts, counts),
        record_index=rec,
        device_id=devices,
        metric=names,
        ts_ms=np.rint(np.where(fits_int, ts, 0.0)).astype(np.int64),
        value=np.where(ok, converted, value),
        unit=np.where(ok, _CANONICAL[metric_code], ""),
        kind=np.where(ok, _KIND[metric_code], ""),
        seq=seq,
        reason=reason,
    )


def _flat(columns: list[list[float]] | list[list[int]], dtype: type, n: int) -> npt.NDArray[Any]:
    return np.fromiter(chain.from_iterable(columns), dtype=dtype, count=n)


def _codes(columns: list[list[str]], table: dict[str, int], n: int) -> npt.NDArray[np.intp]:
    """Vocabulary codes; unknown strings get the last (sentinel) code."""
    miss = len(table)
    return np.fromiter(
        map(table.get, chain.from_iterable(columns), repeat(miss)), dtype=np.intp, count=n
    )


_seen_devices: dict[str, bool] = {}


def _device_ok(device: str) -> bool:
    ok = _seen_devices.get(device)
    if ok is None:
        ok = DEVICE_ID.match(device) is not None
        if len(_seen_devices) < 100_000:  # bounded cache of checked ids
            _seen_devices[device] = ok
    return ok


def _tables() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """(scale, offset, fits) over metrics x units, plus a sentinel row and column for unknowns."""
    shape = (len(_METRIC_NAMES) + 1, len(_UNIT_NAMES) + 1)
    scale, offset, fits = np.ones(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    for i, m in enumerate(_METRIC_NAMES):
        for j, u in enumerate(_UNIT_NAMES):
            conv = (
                conversion(u, m) if u else (1.0, 0.0) if METRICS[m].unit == DIMENSIONLESS else None
            )
            if conv is not None:
                scale[i, j], offset[i, j], fits[i, j] = conv[0], conv[1], True
    return scale, offset, fits


_METRIC_NAMES = list(METRICS)
_UNIT_NAMES = ["", *UNITS]  # "" = unit left out
_METRIC_CODE = {m: i for i, m in enumerate(_METRIC_NAMES)}
_UNIT_CODE = {u: i for i, u in enumerate(_UNIT_NAMES)}
_METRIC_NAMES_OR_UNKNOWN = np.array([*_METRIC_NAMES, ""], dtype=object)
_CANONICAL = np.array([*(METRICS[m].unit for m in _METRIC_NAMES), ""], dtype=object)
_KIND = np.array([*(METRICS[m].kind for m in _METRIC_NAMES), ""], dtype=object)
_SCALE, _OFFSET, _FITS = _tables()
