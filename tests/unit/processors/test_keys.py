"""Integer key codes: lexical codes across frames, stable sort, row matching, the state's catalog
of stable codes (result vs expected)."""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.testing import assert_array_equal
from polars.testing import assert_frame_equal

from processors.kernels import EventTimeState
from processors.kernels.catalog import Catalog
from processors.kernels.decode import READING_SCHEMA
from processors.kernels.keys import find_rows, index_keys, per_key, sort_order
from processors.kernels.state import BUFFER_COLUMNS


def _keys(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(pairs, schema={"device_id": pl.String, "metric": pl.String}, orient="row")


def test_codes_follow_byte_order_and_agree_across_frames() -> None:
    a = _keys([("b", "m"), ("b", "m"), ("a", "z"), ("b", "m"), ("a", "c")])
    b = _keys([("a", "z"), ("c", "m"), ("a", "c")])
    index = index_keys(a, b)
    expected = _keys([("a", "c"), ("a", "z"), ("b", "m"), ("c", "m")])
    assert index.keys.equals(expected)
    assert_array_equal(index.codes[0], [2, 2, 1, 2, 0])
    assert_array_equal(index.codes[1], [1, 3, 0])


def test_empty_frames_have_no_keys() -> None:
    index = index_keys(_keys([]), _keys([("x", "y")]))
    assert index.size == 1
    assert len(index.codes[0]) == 0
    assert_array_equal(index.codes[1], [0])


def test_sort_order_is_stable_and_the_wide_fallback_agrees() -> None:
    code = np.array([1, 0, 1, 0, 1], dtype=np.int64)
    ts = np.array([5, 9, 5, 2, 1], dtype=np.int64)
    assert_array_equal(sort_order(code, ts), [3, 1, 4, 0, 2])  # ties keep arrival order
    wide = ts.copy()
    wide[0] += 2**50  # beyond the packed range: lexsort path
    assert_array_equal(sort_order(code, wide), [3, 1, 4, 2, 0])


def test_find_rows_first_match_or_minus_one_on_both_paths() -> None:
    right_code = np.array([0, 0, 1, 1, 1], dtype=np.int64)
    right_t = np.array([10, 20, 10, 30, 30], dtype=np.int64)
    left_code = np.array([1, 0, 2, 1], dtype=np.int64)
    left_t = np.array([30, 20, 10, 20], dtype=np.int64)
    assert_array_equal(find_rows(left_code, left_t, right_code, right_t), [3, 1, -1, -1])
    far = right_t.copy()
    far[0] = -(2**50)  # beyond the packed range: join path
    assert_array_equal(find_rows(left_code, left_t, right_code, far), [3, 1, -1, -1])


def test_per_key_takes_the_first_of_repeated_rows_and_nulls_for_missing() -> None:
    index = index_keys(_keys([("a", "m"), ("b", "m")]))
    table = pl.DataFrame(
        {"device_id": ["b", "b", "z"], "metric": ["m", "m", "m"], "interval_ms": [5, 7, 9]}
    )
    assert per_key(index, table, "interval_ms").to_list() == [None, 5]
    assert per_key(index, None, "interval_ms").to_list() == [None, None]


def test_catalog_codes_are_stable_and_ranked_in_byte_order() -> None:
    catalog, first = Catalog().with_keys(_keys([("b", "m"), ("a", "m"), ("b", "m")]))
    grown, second = catalog.with_keys(_keys([("a", "l"), ("b", "m")]))
    assert_array_equal(first, [0, 1, 0])
    assert_array_equal(second, [2, 0])  # known keys keep their code, a new one gets the next
    assert_array_equal(grown.rank, [2, 1, 0])  # (a, l) < (a, m) < (b, m)
    assert grown.devices.to_list() == ["b", "a"]
    assert_array_equal(grown.key_device, [0, 1, 1])
    assert catalog.n_keys == 2  # the earlier catalog is unchanged


def test_catalog_codes_rows_once_per_run_with_labels() -> None:
    frame = pl.DataFrame(
        {
            "tenant": ["t", "t", "t", "u"],
            "device_id": ["a", "a", "b", "a"],
            "metric": ["m", "m", "m", "m"],
            "kind": ["counter"] * 4,
        }
    )
    catalog, key, label = Catalog().code_rows(frame)
    assert_array_equal(key, [0, 0, 1, 0])
    assert_array_equal(label, [0, 0, 0, 1])
    assert catalog.labels.rows() == [("t", "counter"), ("u", "counter")]


def test_catalog_looks_few_runs_up_by_dict_as_the_join_does() -> None:
    n = 40
    seen = pl.DataFrame(
        {
            "tenant": ["t", None] * (n // 2),
            "device_id": [f"d{i}" for i in range(n)],
            "metric": ["m"] * n,
            "kind": ["counter", "gauge"] * (n // 2),
        }
    )
    catalog, key, label = Catalog().code_rows(seen)
    assert len(catalog.run_codes) == n
    few = seen[[37, 2, 2, 19]]  # 3 runs against 40 known: looked up one by one
    again, got_key, got_label = catalog.code_rows(few)
    assert again is catalog  # nothing new
    assert_array_equal(got_key, key[[37, 2, 2, 19]])
    assert_array_equal(got_label, label[[37, 2, 2, 19]])
    assert set(label.tolist()) == {0, 1}


def test_state_frames_read_back_as_given() -> None:
    buffer = pl.DataFrame(
        {
            "tenant": ["t", "t", "t"],
            "device_id": ["b", "a", "b"],
            "metric": ["m", "m", "n"],
            "kind": ["counter", "counter", "gauge"],
            "ts_ms": [3, 1, 2],
            "value": [1.0, 2.0, None],
            "seq": [None, 1, 2],
            "received_at_ms": [0, 0, 0],
            "anchor": [True, False, False],
        },
        schema={**READING_SCHEMA, "anchor": pl.Boolean()},
    )
    watermarks = pl.DataFrame(
        {"device_id": ["a", "b"], "watermark_ms": [None, 5], "last_seen_ms": [7, None]},
        schema={"device_id": pl.String, "watermark_ms": pl.Int64, "last_seen_ms": pl.Int64},
    )
    intervals = _keys([("a", "m"), ("c", "m")]).with_columns(interval_ms=pl.Series([60, 900]))
    state = EventTimeState(buffer=buffer, watermarks=watermarks, intervals=intervals)
    # the state keeps what windows need: sequence numbers and receive times stay behind
    buffer = buffer.select(BUFFER_COLUMNS)
    assert_frame_equal(state.buffer, buffer)
    # per-code tables read back in code order: devices and keys in order of first sight
    assert_frame_equal(state.watermarks, watermarks, check_row_order=False)
    assert_frame_equal(state.intervals, intervals, check_row_order=False)
    assert sorted(state.devices().to_list()) == ["a", "b"]
    merged = EventTimeState().merged(state)
    assert_frame_equal(merged.buffer, buffer)
