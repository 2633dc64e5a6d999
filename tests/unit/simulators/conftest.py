"""Fixtures of the simulator tests: the demo scenario run once with and once without faults."""

from __future__ import annotations

import dataclasses

import pytest

from simulators.faults import MESSAGE_KINDS
from simulators.run import Run, simulate
from simulators.scenario import Scenario, load_scenario, with_overrides


@pytest.fixture(scope="session")
def demo() -> Scenario:
    """The packaged demo scenario."""
    return load_scenario("demo")


@pytest.fixture(scope="session")
def demo_run(demo: Scenario) -> Run:
    """The demo with its faults."""
    return simulate(demo)


@pytest.fixture(scope="session")
def clean_run(demo: Scenario) -> Run:
    """The demo without faults."""
    return simulate(with_overrides(demo, faults=False))


READING_RATES = {
    "gap": 0.01,
    "stuck": 0.02,
    "spike": 0.01,
    "clock_skew": 0.01,
    "unit_mistake": 0.01,
}
SERIES_RATES = {"register_reset": 0.3, "rollover": 0.3}
MESSAGE_RATES = dict.fromkeys(MESSAGE_KINDS, 0.01)


@pytest.fixture(scope="session")
def faulty(demo: Scenario) -> Run:
    """The demo with high fault rates (1 % per kind), for rate and visibility checks."""
    rates = {**READING_RATES, **SERIES_RATES, **MESSAGE_RATES}
    return simulate(dataclasses.replace(demo, faults=rates))
