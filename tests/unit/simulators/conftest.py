"""Fixtures of the simulator tests: the demo scenario run once with and once without faults."""

from __future__ import annotations

import pytest

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
