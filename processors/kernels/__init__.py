"""Pure, vectorised kernels of the stream processors: no asyncio, Kafka, MQTT or database code.

Chain: :func:`decode_batches` -> :func:`step` (dedup, :func:`clean`, windows, event time) ->
baseline prediction (``processors.baselines``) -> :func:`emission_deltas`.
"""

from processors.kernels import flags
from processors.kernels.clean import CleanParams, clean, infer_intervals, robust_stats
from processors.kernels.decode import READING_SCHEMA, decode_batches, dedup, empty_readings
from processors.kernels.emissions import (
    MetricRule,
    emission_deltas,
    mode_shift_kg,
    mode_shift_terms,
    pilot_rules,
    window_factors,
)
from processors.kernels.eventtime import (
    EventTimeParams,
    EventTimeState,
    StepResult,
    close_idle,
    rebuild_state,
    step,
)
from processors.kernels.windows import WIDTHS_S, WINDOW_SCHEMA, aggregate, bucket_start

__all__ = [
    "READING_SCHEMA",
    "WIDTHS_S",
    "WINDOW_SCHEMA",
    "CleanParams",
    "EventTimeParams",
    "EventTimeState",
    "MetricRule",
    "StepResult",
    "aggregate",
    "bucket_start",
    "clean",
    "close_idle",
    "decode_batches",
    "dedup",
    "emission_deltas",
    "empty_readings",
    "flags",
    "infer_intervals",
    "mode_shift_kg",
    "mode_shift_terms",
    "pilot_rules",
    "rebuild_state",
    "robust_stats",
    "step",
    "window_factors",
]
