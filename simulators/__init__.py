"""Seeded device simulators with known ground truth, fault injection, record and replay.

Typical use::

    from simulators import load_scenario, simulate, write_run
    run = simulate(load_scenario("demo"))
    write_run(run, Path("out/sim/demo"))

Names are imported lazily so ``pilotstream --help`` does not load numpy and polars.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "read_messages": "simulators.publishers.files",
    "read_truth": "simulators.publishers.files",
    "write_run": "simulators.publishers.files",
    "Run": "simulators.run",
    "simulate": "simulators.run",
    "Scenario": "simulators.scenario",
    "ScenarioError": "simulators.scenario",
    "end_at_now": "simulators.scenario",
    "load_scenario": "simulators.scenario",
    "with_overrides": "simulators.scenario",
    "TRUTH_COLUMNS": "simulators.truth",
    "ground_truth": "simulators.truth",
    "truth_frame": "simulators.truth",
}

__all__ = [
    "TRUTH_COLUMNS",
    "Run",
    "Scenario",
    "ScenarioError",
    "end_at_now",
    "ground_truth",
    "load_scenario",
    "read_messages",
    "read_truth",
    "simulate",
    "truth_frame",
    "with_overrides",
    "write_run",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'simulators' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)
