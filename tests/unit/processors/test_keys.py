"""Integer key codes: lexical codes across frames, stable sort, row matching (result vs expected)."""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.testing import assert_array_equal

from processors.kernels.keys import find_rows, index_keys, per_key, sort_order


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
