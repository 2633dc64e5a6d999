"""Unit vocabulary, the registry and the CLI's promises."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from pilotstream import cli
from pilotstream.registry import load_registry
from pilotstream.vocab import METRICS, UNITS, conversion, to_canonical


@pytest.mark.parametrize(
    ("value", "unit", "metric", "expected"),
    [
        (1500.0, "Wh", "energy.active.import", 1.5),
        (2.0, "MWh", "energy.heat", 2000.0),
        (1.0, "GJ", "energy.heat", 277.7777777777778),
        (3.6e6, "J", "energy.active.import", 1.0),
        (2500.0, "W", "power.active", 2.5),
        (293.15, "K", "weather.temperature", 20.0),
        (1200.0, "m", "trip.distance.escooter", 1.2),
    ],
)
def test_conversions_to_canonical(value: float, unit: str, metric: str, expected: float) -> None:
    assert math.isclose(to_canonical(value, unit, metric), expected, rel_tol=1e-12)


def test_units_that_do_not_fit_are_refused() -> None:
    assert conversion("kW", "energy.active.import") is None
    assert conversion("furlong", "trip.distance.ebike") is None
    assert conversion("kWh", "no.such.metric") is None
    with pytest.raises(KeyError):
        to_canonical(1.0, "Cel", "power.active")


def test_every_metric_has_a_canonical_unit_in_the_unit_table() -> None:
    for spec in METRICS.values():
        assert UNITS[spec.unit] == (spec.unit, 1.0, 0.0), spec.name


def test_registry_has_five_cities_with_an_energy_and_a_mobility_pilot_each() -> None:
    reg = load_registry()
    assert set(reg.cities) == {"paris", "amsterdam", "helsinki", "stavanger", "tallinn"}
    for city in reg.cities:
        lots = {p.lot for p in reg.pilots.values() if p.city == city}
        assert lots == {"energy", "mobility"}, city
    assert reg.city_of("helsinki-energy-1").tz == "Europe/Helsinki"


def test_verbs_not_built_yet_say_so_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    run = cli._not_built("frobnicate", "does things")
    assert run(None) == cli.EXIT_USAGE  # type: ignore[arg-type]
    assert "not built yet" in capsys.readouterr().err


def test_help_lists_every_verb_and_shows_env_vars() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pilotstream.cli", "stack", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "PILOTSTREAM_KAFKA_HEAP_MB" in out
    assert "default 768" in out
    top = subprocess.run(
        [sys.executable, "-m", "pilotstream.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for verb in cli.VERBS:
        assert verb in top
