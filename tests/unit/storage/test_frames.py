"""Input checks of the writer: columns, types, nulls, NUL bytes, non-finite floats."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from storage.errors import InvalidBatch
from storage.frames import READINGS, READINGS_DEFAULTS, REJECTIONS, REJECTIONS_DEFAULTS, conform


def _readings(**over: object) -> dict[str, object]:
    cols: dict[str, object] = {
        "ts_ms": np.array([1, 2], dtype=np.int64),
        "tenant": ["t", "t"],
        "device_id": ["d", "d"],
        "metric": ["m", "m"],
        "value": np.array([1.0, 2.0]),
        "received_at_ms": np.array([3, 4], dtype=np.int32),
    }
    cols.update(over)
    return cols


def test_dict_of_arrays_gets_defaults_and_schema() -> None:
    result = conform("readings", _readings(), READINGS, READINGS_DEFAULTS)
    assert result.schema == pl.Schema(READINGS)
    assert result["seq"].to_list() == [-1, -1]
    assert result["quality"].to_list() == [0, 0]


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"value": np.array([1.0, math.nan])}, "'value' holds a non-finite value at row 1"),
        ({"value": np.array([-math.inf, 1.0])}, "'value' holds a non-finite value at row 0"),
        ({"metric": ["m", "m\x00x"]}, "'metric' holds a NUL byte at row 1"),
        ({"tenant": ["t", None]}, "'tenant' has 1 null"),
        ({"ts_ms": ["a", "b"]}, "expected type"),
    ],
)
def test_bad_values_are_refused(over: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidBatch, match=match):
        conform("readings", _readings(**over), READINGS, READINGS_DEFAULTS)


def test_missing_column_is_named() -> None:
    cols = _readings()
    del cols["metric"]
    with pytest.raises(InvalidBatch, match="'metric' is missing"):
        conform("readings", cols, READINGS, READINGS_DEFAULTS)


def test_rejections_bytes_may_hold_nul_but_text_may_not() -> None:
    row = {
        "received_at_ms": [1],
        "tenant": ["t"],
        "reason": ["bad_json"],
        "topic": ["x"],
        "payload": [b"\x00\x01"],
        "payload_size": [2],
    }
    assert conform("rejections", row, REJECTIONS, REJECTIONS_DEFAULTS)["payload"].to_list() == [
        b"\x00\x01"
    ]
    with pytest.raises(InvalidBatch, match="NUL"):
        conform("rejections", {**row, "reason": ["a\x00"]}, REJECTIONS, REJECTIONS_DEFAULTS)
