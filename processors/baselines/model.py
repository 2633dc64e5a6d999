"""A fitted baseline as a serialisable value, with a stable model id.

Stored by the storage layer in the ``baselines`` table (model id, device, method, parameters, fit
metrics, period); a model that fails data sufficiency is still a value, with
``sufficient=False`` and its reasons, so its results are flagged rather than silently used.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import polars as pl

from processors.baselines.metrics import FitMetrics

METHODS = ("daily", "daylight", "hourly", "tow")


@dataclass(frozen=True, kw_only=True)
class FittedModel:
    """One device's baseline model."""

    method: str  # daily (CalTRACK daily) | hourly (time-of-week and temperature) | tow
    device_id: str  # device the model predicts
    metric: str  # metric it predicts (its amount per window)
    period_start_ms: int  # baseline period start, UTC ms (inclusive)
    period_end_ms: int  # baseline period end, UTC ms (exclusive)
    params: dict[str, Any]  # method parameters, JSON-serialisable
    metrics: FitMetrics | None  # fit on the baseline period (None when nothing could be fitted)
    sufficient: bool  # data sufficiency rules met
    reasons: tuple[str, ...] = ()  # why not sufficient (reason codes)
    excluded: tuple[tuple[int, int], ...] = ()  # periods cut from fitting (UTC ms, half-open)
    model_id: str = field(default="")  # stable id; derived from the content when empty

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            msg = f"method must be one of {METHODS}, not {self.method!r}"
            raise ValueError(msg)
        if self.period_end_ms <= self.period_start_ms:
            msg = "period_end_ms must be after period_start_ms"
            raise ValueError(msg)
        if not self.model_id:
            object.__setattr__(self, "model_id", self._derive_id())

    @property
    def usable(self) -> bool:
        """Sufficient data and a fit that meets the ASHRAE thresholds."""
        return self.sufficient and self.metrics is not None and self.metrics.meets_ashrae

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``from_dict`` reads it back)."""
        return {
            "model_id": self.model_id,
            "method": self.method,
            "device_id": self.device_id,
            "metric": self.metric,
            "period_start_ms": self.period_start_ms,
            "period_end_ms": self.period_end_ms,
            "params": self.params,
            "metrics": None if self.metrics is None else self.metrics.to_dict(),
            "sufficient": self.sufficient,
            "reasons": list(self.reasons),
            "excluded": [list(p) for p in self.excluded],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedModel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            model_id=data["model_id"],
            method=data["method"],
            device_id=data["device_id"],
            metric=data["metric"],
            period_start_ms=int(data["period_start_ms"]),
            period_end_ms=int(data["period_end_ms"]),
            params=data["params"],
            metrics=None if data["metrics"] is None else FitMetrics(**data["metrics"]),
            sufficient=bool(data["sufficient"]),
            reasons=tuple(data["reasons"]),
            excluded=tuple((int(a), int(b)) for a, b in data.get("excluded", [])),
        )

    def _derive_id(self) -> str:
        body = json.dumps(
            [
                self.method,
                self.device_id,
                self.metric,
                self.period_start_ms,
                self.period_end_ms,
                self.params,
                list(self.excluded),
            ],
            sort_keys=True,
            separators=(",", ":"),
            default=float,
        )
        digest = hashlib.sha256(body.encode()).hexdigest()[:12]
        return f"{self.method}:{self.device_id}:{digest}"


_T = TypeVar("_T")


class RecentBuilds(Generic[_T]):
    """The last few values built from model lists, by key (model ids): a processor predicts
    with the same models poll after poll, so the stacking is done once per model set."""

    def __init__(self, size: int = 8) -> None:
        self._items: OrderedDict[Hashable, _T] = OrderedDict()
        self._size = size

    def get(self, key: Hashable, build: Callable[[], _T]) -> _T:
        """The value for ``key``, built (and the oldest forgotten) on a miss."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        value = self._items[key] = build()
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


_STACKS: RecentBuilds[tuple[pl.DataFrame, np.ndarray]] = RecentBuilds()


def stacked(
    models: Sequence[FittedModel], param: str, shape: tuple[int, ...]
) -> tuple[pl.DataFrame, np.ndarray]:
    """Models' ``param`` arrays stacked (M, *shape) with an index frame (device_id, metric, _m,
    baseline_model_id); the last few stacks are cached by model ids, since a processor predicts
    with the same models batch after batch."""
    key = (param, tuple(m.model_id for m in models))
    return _STACKS.get(key, lambda: _stack(models, param, shape))


def _stack(
    models: Sequence[FittedModel], param: str, shape: tuple[int, ...]
) -> tuple[pl.DataFrame, np.ndarray]:
    index = pl.DataFrame(
        {
            "device_id": [m.device_id for m in models],
            "metric": [m.metric for m in models],
            "_m": np.arange(len(models), dtype=np.int64),
            "baseline_model_id": [m.model_id for m in models],
        },
        schema={
            "device_id": pl.String,
            "metric": pl.String,
            "_m": pl.Int64,
            "baseline_model_id": pl.String,
        },
    )
    values = np.array([m.params[param] for m in models], dtype=np.float64).reshape(-1, *shape)
    return index, values
