"""Scenario files: the demo covers every city with an energy and a mobility pilot."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.scenario import Scenario, ScenarioError, end_at_now, load_scenario, with_overrides


def test_demo_covers_five_cities_with_both_lots(demo: Scenario) -> None:
    lots: dict[str, set[str]] = {}
    for g in demo.groups:
        pilot = demo.registry.pilots[g.tenant]
        lots.setdefault(pilot.city, set()).add(pilot.lot)
    assert set(lots) == set(demo.registry.cities)
    assert all(v == {"energy", "mobility"} for v in lots.values())


def test_demo_has_baseline_before_intervention(demo: Scenario) -> None:
    assert demo.days == 42
    assert demo.intervention_day == 28
    assert demo.start_ms < demo.intervention_ms < demo.anchor_end_ms
    assert any(g.effect < 0 for g in demo.groups)


def test_city_scale_is_thousands_of_devices_over_a_year() -> None:
    scn = load_scenario("city-scale")
    assert scn.days == 365
    assert scn.device_count >= 2000


def test_end_at_now_moves_the_period_to_the_last_whole_step(demo: Scenario) -> None:
    now = 1_800_000_123_456
    moved = end_at_now(demo, now_ms=now)
    assert moved.anchor_end_ms <= now < moved.anchor_end_ms + demo.step_s * 1000
    assert moved.anchor_end_ms % (demo.step_s * 1000) == 0
    assert moved.days == demo.days


def test_no_faults_sets_every_rate_to_zero(demo: Scenario) -> None:
    quiet = with_overrides(demo, faults=False, seed=3)
    assert quiet.seed == 3
    assert set(quiet.faults) == set(demo.faults)
    assert all(rate == 0.0 for rate in quiet.faults.values())


def test_unknown_pilot_is_refused(tmp_path: Path) -> None:
    text = Path(load_scenario.__globals__["scenario_path"]("demo")).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('tenant = "paris-energy-1"', 'tenant = "rome-energy-1"', 1))
    with pytest.raises(ScenarioError, match="rome-energy-1"):
        load_scenario(str(bad))


def test_missing_scenario_is_a_clear_error() -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario("no-such-scenario")
