"""Same scenario and seed: byte-identical files; another seed: another feed."""

from __future__ import annotations

from pathlib import Path

from simulators.publishers.files import write_run
from simulators.run import Run, simulate
from simulators.scenario import Scenario, with_overrides


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_files(
    demo: Scenario, demo_run: Run, tmp_path: Path
) -> None:
    write_run(demo_run, tmp_path / "a")
    write_run(simulate(demo), tmp_path / "b")
    a, b = _bytes(tmp_path / "a"), _bytes(tmp_path / "b")
    assert set(a) == {
        "messages.jsonl",
        "readings.parquet",
        "truth.parquet",
        "truth.csv",
        "truth.md",
        "faults.parquet",
        "faults.csv",
        "trips.parquet",
        "manifest.json",
    }
    assert a == b


def test_another_seed_gives_another_feed(demo: Scenario, demo_run: Run) -> None:
    other = simulate(with_overrides(demo, seed=demo.seed + 1))
    assert other.messages["payload"].to_list() != demo_run.messages["payload"].to_list()
    assert other.truth.height == demo_run.truth.height
