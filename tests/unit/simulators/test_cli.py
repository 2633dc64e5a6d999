"""The simulate verb writes a replayable folder; replay parses its speed and refuses nonsense."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotstream.cli import main
from simulators.replay import Pace, ReplayState, replay


def test_simulate_demo_to_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["simulate", "demo", "--to", "file", "--out", str(out), "--no-faults"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenario"] == "demo"
    assert manifest["faults"] == {}
    assert manifest["messages"] == (out / "messages.jsonl").read_bytes().count(b"\n")
    assert "ground truth" in capsys.readouterr().err


def test_pace_parsing() -> None:
    assert Pace.parse("max").speed is None
    assert Pace.parse("3600", 50.0) == Pace(3600.0, 50.0)
    with pytest.raises(ValueError, match="speed"):
        Pace.parse("-1")


async def test_replay_keeps_the_virtual_clock() -> None:
    import time

    import polars as pl

    items = pl.DataFrame({"deliver_at_ms": [0, 3_600_000, 7_200_000], "x": [1, 2, 3]})
    seen: list[int] = []

    async def send(row: dict[str, int]) -> None:
        seen.append(row["x"])

    state = ReplayState(total=3)
    t0 = time.monotonic()
    await replay(items, send, pace=Pace(36_000.0), state=state)  # 2 h virtual = 0.2 s real
    assert 0.18 <= time.monotonic() - t0 < 5.0  # generous: the machine is shared
    assert seen == [1, 2, 3]
    assert state.sent == 3
    assert state.virtual_ms == 7_200_000
    assert "3 of 3 messages" in state.describe()


def test_settings_refuse_a_zero_window() -> None:
    from pilotstream.errors import SettingsError
    from simulators.settings import SimulatorSettings

    with pytest.raises(SettingsError, match="mqtt_max_outstanding"):
        SimulatorSettings.load(env={}, overrides={"mqtt_max_outstanding": "0"})


def test_help_does_not_load_numpy_or_polars() -> None:
    import subprocess
    import sys

    code = "import sys, pilotstream.cli as c; c.build_parser(); print('polars' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_city_scale_in_memory_is_refused_without_days(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "city-scale", "--to", "file"]) == 2
    assert "--days" in capsys.readouterr().err


def test_first_days_keeps_the_intervention_share() -> None:
    from simulators.scenario import first_days, load_scenario

    scn = first_days(load_scenario("city-scale"), 4)
    assert scn.days == 4
    assert scn.intervention_day == 2
    assert scn.anchor_end_ms - scn.start_ms == 4 * 86_400_000
