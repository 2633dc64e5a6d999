"""Vectorised validation: each reason code, conversion to canonical units."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.decoders.base import Decoded
from ingest.validate import Limits, validate

NOW = 1_772_360_100_000
LIMITS = Limits(future_skew_ms=300_000, horizon_ms=400 * 86_400_000)
TENANTS = {"paris-energy-1"}


def _one(device: str, metric: str, ts: float, value: float, unit: str) -> Decoded:
    d = Decoded(device)
    d.add(metric, ts, value, unit, -1, 0)
    return d


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (("m1", "energy.active.import", NOW, 1.5, "kWh"), ""),
        (("m1", "energy.active.import", NOW, float("nan"), "kWh"), "non_finite"),
        (("m1", "energy.active.import", float("inf"), 1.0, "kWh"), "non_finite"),
        (("m1", "energy.active.import", NOW, 1e308, "MWh"), "non_finite"),  # overflows converting
        (("m 1", "energy.active.import", NOW, 1.0, "kWh"), "bad_device_id"),
        (("x" * 65, "energy.active.import", NOW, 1.0, "kWh"), "bad_device_id"),
        (("-m1", "energy.active.import", NOW, 1.0, "kWh"), "bad_device_id"),
        (("m1", "energy.reactive", NOW, 1.0, "kWh"), "unknown_metric"),
        (("m1", "energy.active.import", NOW, 1.0, "kW"), "bad_unit"),
        (("m1", "energy.active.import", NOW, 1.0, ""), "bad_unit"),
        (("m1", "traffic.count.car", NOW, 3, ""), ""),  # a count may leave its unit out
        (("m1", "power.active", NOW + 300_001, 1.0, "kW"), "future_ts"),
        (("m1", "power.active", NOW + 300_000, 1.0, "kW"), ""),
        (("m1", "power.active", NOW - 400 * 86_400_000 - 1, 1.0, "kW"), "too_old"),
    ],
)
def test_reason(reading: tuple[str, str, float, float, str], reason: str) -> None:
    c = validate([_one(*reading)], ["paris-energy-1"], [NOW], TENANTS, LIMITS)
    assert c.reason.tolist() == [reason]


def test_unknown_tenant_is_wrong_tenant() -> None:
    c = validate([_one("m1", "power.active", NOW, 1, "kW")], ["nobody"], [NOW], TENANTS, LIMITS)
    assert c.reason.tolist() == ["wrong_tenant"]


def test_conversion_to_canonical_units_across_messages() -> None:
    a, b = Decoded("m1"), Decoded("t1")
    a.add("energy.active.import", NOW, 1500.0, "Wh", 1, 0)
    a.add("power.active", NOW, 2500.0, "W", 2, 1)
    b.add("weather.temperature", NOW - 1000.4, 300.15, "K", -1, 0)
    b.add("energy.heat", NOW, 1.0, "GJ", -1, 1)
    c = validate([a, b], ["paris-energy-1"] * 2, [NOW, NOW], TENANTS, LIMITS)
    assert c.reason.tolist() == ["", "", "", ""]
    np.testing.assert_allclose(c.value, [1.5, 2.5, 27.0, 1e9 / 3.6e6])
    assert c.unit.tolist() == ["kWh", "kW", "Cel", "kWh"]
    assert c.kind.tolist() == ["counter", "gauge", "gauge", "counter"]
    assert c.ts_ms.tolist() == [NOW, NOW, NOW - 1000, NOW]
    assert c.msg.tolist() == [0, 0, 1, 1]
    assert c.seq.tolist() == [1, 2, -1, -1]
    assert c.pos.tolist() == [0, 1, 0, 1]
    assert c.metric.tolist() == [
        "energy.active.import",
        "power.active",
        "weather.temperature",
        "energy.heat",
    ]


def test_empty_batch() -> None:
    c = validate([Decoded("m1")], ["paris-energy-1"], [NOW], TENANTS, LIMITS)
    assert len(c) == 0
