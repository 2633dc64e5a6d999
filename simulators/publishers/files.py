"""File outputs of a run: JSON Lines of the MQTT messages (for replay), Parquet of the readings,
the ground truth (Parquet + CSV + notes) and the fault log. Same scenario and seed, same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from simulators.run import Run
from simulators.truth import NOTES

MESSAGES = "messages.jsonl"
READINGS = "readings.parquet"
TRUTH = "truth.parquet"
TRUTH_CSV = "truth.csv"
TRUTH_NOTES = "truth.md"
FAULTS = "faults.parquet"
FAULTS_CSV = "faults.csv"
TRIPS = "trips.parquet"
MANIFEST = "manifest.json"

MESSAGE_LINE = ["deliver_at_ms", "user", "topic", "msg_id", "payload"]
READING_COLUMNS = [
    "tenant",
    "city",
    "device_id",
    "metric",
    "ts_ms",
    "value",
    "unit",
    "kind",
    "msg_id",
]


def write_run(run: Run, out_dir: Path) -> dict[str, Path]:
    """Write every output of ``run`` into ``out_dir`` (created); returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        name: out_dir / name
        for name in (
            MESSAGES,
            READINGS,
            TRUTH,
            TRUTH_CSV,
            TRUTH_NOTES,
            FAULTS,
            FAULTS_CSV,
            TRIPS,
            MANIFEST,
        )
    }
    run.messages.select(MESSAGE_LINE).write_ndjson(paths[MESSAGES])
    readings = run.readings.select(READING_COLUMNS).sort(
        ["device_id", "metric", "ts_ms"], maintain_order=True
    )
    readings.write_parquet(paths[READINGS], compression="zstd", statistics=True)
    run.truth.write_parquet(paths[TRUTH], compression="zstd")
    run.truth.write_csv(paths[TRUTH_CSV], float_precision=6)
    paths[TRUTH_NOTES].write_text(NOTES, "utf-8")
    run.faults.write_parquet(paths[FAULTS], compression="zstd")
    run.faults.write_csv(paths[FAULTS_CSV])
    run.trips.write_parquet(paths[TRIPS], compression="zstd")
    paths[MANIFEST].write_text(json.dumps(manifest(run), indent=2, sort_keys=True) + "\n", "utf-8")
    return paths


def manifest(run: Run) -> dict[str, object]:
    """What the files hold (no wall-clock time, so the bytes stay deterministic)."""
    scn = run.scenario
    return {
        "scenario": scn.name,
        "seed": scn.seed,
        "start_ms": scn.start_ms,
        "end_ms": scn.anchor_end_ms,
        "intervention_ms": scn.intervention_ms,
        "devices": scn.device_count,
        "readings": run.readings.height,
        "messages": run.messages.height,
        "faults": dict(sorted(run.faults.group_by("kind").len().rows())),
        "fault_rates": scn.faults,
        "files": {
            "messages": MESSAGES,
            "readings": READINGS,
            "truth": TRUTH,
            "faults": FAULTS,
            "trips": TRIPS,
        },
    }


def read_messages(path: Path) -> pl.DataFrame:
    """Messages of a JSON Lines file written by :func:`write_run`, in delivery order."""
    schema = {
        "deliver_at_ms": pl.Int64,
        "user": pl.String,
        "topic": pl.String,
        "msg_id": pl.String,
        "payload": pl.String,
    }
    return pl.read_ndjson(path, schema=schema)


def read_truth(out_dir: Path) -> pl.DataFrame:
    """The ground truth written next to a run's messages."""
    return pl.read_parquet(out_dir / TRUTH)
