"""One simulation run end to end, in memory: models -> readings -> faults -> messages, plus the truth.

The seeds of the parts are independent: device group ``g`` chunk ``c`` uses ``(seed, g, c)``, city
weather ``(seed, 10000 + city)``, reading faults ``(seed, 20000)``, message faults ``(seed, 20001)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from simulators.faults import inject_message_faults, inject_reading_faults
from simulators.formats import LORAWAN, encode_messages
from simulators.generate import generate_chunks, readings_frame, trips_frame
from simulators.scenario import Scenario
from simulators.truth import truth_frame


@dataclass(frozen=True, slots=True)
class Run:
    """Everything a run produced."""

    scenario: Scenario
    clean: pl.DataFrame  # readings before faults (canonical values), with slot and msg_id
    readings: pl.DataFrame  # readings as sent (after reading faults; canonical interpretation)
    messages: (
        pl.DataFrame
    )  # MQTT messages in delivery order (deliver_at_ms, user, topic, payload...)
    truth: pl.DataFrame  # ground truth per pilot, metric and local day
    faults: pl.DataFrame  # fault log, one row per injected fault
    trips: pl.DataFrame  # shared trips: tenant, device_id, mode, start_ms, end_ms, km


def simulate(scn: Scenario) -> Run:
    """Run a scenario (its seed and fault rates as given; see scenario.with_overrides)."""
    chunks = list(generate_chunks(scn))
    truth = truth_frame(chunks, scn)
    trips = trips_frame(chunks)
    clean = with_messages(readings_frame(chunks), scn)
    del chunks
    readings, reading_log = inject_reading_faults(
        clean, scn.faults, np.random.default_rng([scn.seed, 20_000])
    )
    messages, message_log = inject_message_faults(
        encode_messages(readings),
        scn.faults,
        np.random.default_rng([scn.seed, 20_001]),
        tenants=sorted(scn.registry.pilots),
        span_ms=scn.step_s * 1000 * scn.readings_per_message,
    )
    log = pl.concat([reading_log, message_log]).sort(
        ["kind", "device_id", "ts_ms", "metric", "msg_id"]
    )
    return Run(scn, clean, readings, messages, truth, log, trips)


def with_messages(readings: pl.DataFrame, scn: Scenario) -> pl.DataFrame:
    """Assign each reading its message: ``slot`` (message number of the device) and ``msg_id``.

    json / senml / ocpp bundle ``readings_per_message`` steps; LoRaWAN sends one uplink per step.
    """
    step_ms = scn.step_s * 1000
    per = pl.when(pl.col("fmt").is_in(LORAWAN)).then(1).otherwise(scn.readings_per_message)
    slot = (pl.col("ts_ms") - scn.start_ms) // (per * step_ms)
    return readings.with_columns(slot=slot).with_columns(
        msg_id=pl.concat_str([pl.col("device_id"), pl.lit(":"), pl.col("slot").cast(pl.String)])
    )
