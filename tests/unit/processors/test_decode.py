"""decode_batches against the previous implementation and a row-by-row reference."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pilotstream.contracts import NO_SEQ, ReadingBatch
from processors.kernels import READING_SCHEMA, decode_batches, empty_readings

E = "energy.active.import"
METRICS = [E, "power.active", "temperature"]
KINDS = ["counter", "gauge", "delta"]


def _previous(batches: Sequence[ReadingBatch]) -> pl.DataFrame:
    """decode_batches as it was before the concatenate-then-convert version (the reference)."""
    if not batches:
        return empty_readings()
    ts_lists = list(map(attrgetter("ts_ms"), batches))
    lengths = np.fromiter(map(len, ts_lists), dtype=np.int64, count=len(batches))
    n = int(lengths.sum())
    batch_of = np.repeat(np.arange(len(batches)), lengths)

    def per_batch(values: list[Any], dtype: pl.DataType) -> pl.Series:
        return pl.Series(values, dtype=dtype).gather(batch_of)

    def text(name: str) -> pl.Series:
        lists = list(map(attrgetter(name), batches))
        heads = (
            list(map(itemgetter(0), lists)) if lengths.all() else [v[0] if v else "" for v in lists]
        )
        same = np.fromiter(map(list.count, lists, heads), np.int64, len(lists))
        if (same == lengths).all():
            return per_batch(heads, pl.String())
        return pl.Series(list(chain.from_iterable(lists)), dtype=pl.String())

    def numbers(name: str, dtype: type[np.generic]) -> np.ndarray:
        lists = ts_lists if name == "ts_ms" else map(attrgetter(name), batches)
        return np.fromiter(chain.from_iterable(lists), dtype, n)

    return pl.DataFrame(
        {
            "tenant": per_batch([b.tenant for b in batches], pl.String()),
            "device_id": per_batch([b.device_id for b in batches], pl.String()),
            "metric": text("metric"),
            "kind": text("kind"),
            "ts_ms": numbers("ts_ms", np.int64),
            "value": numbers("value", np.float64),
            "seq": numbers("seq", np.int64),
            "received_at_ms": per_batch([b.received_at_ms for b in batches], pl.Int64()),
        },
        schema=READING_SCHEMA,
    )


def _row_by_row(batches: Sequence[ReadingBatch]) -> pl.DataFrame:
    """The readings one row at a time, from :meth:`ReadingBatch.readings`."""
    rows = [
        {name: getattr(r, name) for name in READING_SCHEMA}
        for r in chain.from_iterable(b.readings() for b in batches)
    ]
    return pl.DataFrame(rows, schema=READING_SCHEMA, orient="row")


def _assert_same(batches: Sequence[ReadingBatch]) -> None:
    result = decode_batches(batches)
    assert result.schema == pl.Schema(READING_SCHEMA)
    assert_frame_equal(result, _previous(batches), check_exact=True)
    assert_frame_equal(result, _row_by_row(batches), check_exact=True)
    if not any(np.isnan(result["value"].to_numpy())):  # equals() is NaN-sensitive
        assert result.equals(_previous(batches))


def _batch(
    device: str,
    metric: list[str],
    kind: list[str] | None = None,
    *,
    tenant: str = "paris-energy-1",
    received_at_ms: int = 7,
) -> ReadingBatch:
    n = len(metric)
    return ReadingBatch(
        tenant=tenant,
        city="paris",
        device_id=device,
        gateway_id="g1",
        received_at_ms=received_at_ms,
        metric=metric,
        ts_ms=[900_000 * k for k in range(n)],
        value=[0.5 * k for k in range(n)],
        unit=["kWh"] * n,
        kind=kind if kind is not None else ["counter"] * n,
        seq=list(range(n)),
    )


def test_empty_input_gives_the_empty_frame() -> None:
    assert_frame_equal(decode_batches([]), empty_readings())
    _assert_same([])


def test_only_empty_batches_give_no_rows() -> None:
    batches = [_batch("a", []), _batch("b", [], tenant="other")]
    assert decode_batches(batches).height == 0
    _assert_same(batches)


def test_one_batch_and_one_row() -> None:
    _assert_same([_batch("a", [E, E, E])])
    _assert_same([_batch("a", [E])])


def test_mixed_lengths_with_empty_batches() -> None:
    _assert_same([_batch("a", [E]), _batch("b", []), _batch("c", [E] * 5), _batch("d", [])])


def test_one_metric_per_batch_and_tenants_per_batch() -> None:
    batches = [
        _batch(f"d{i}", [METRICS[i % 3]] * (i % 4), tenant=f"t{i % 2}", received_at_ms=i)
        for i in range(30)
    ]
    _assert_same(batches)


def test_mixed_metrics_and_kinds_within_batches() -> None:
    batches = [
        _batch("a", [E, "power.active", E], ["counter", "gauge", "counter"]),
        _batch("b", []),
        _batch("c", [E, E], ["delta", "delta"]),
    ]
    _assert_same(batches)


def test_many_batches_of_distinct_string_objects() -> None:
    # msgspec-decoded batches hold a new str object per reading: equal, not identical
    built = [_batch(f"dev-{i:05d}", [E] * 8, received_at_ms=i) for i in range(2_000)]
    decode = msgspec.json.Decoder(ReadingBatch)
    batches = [decode.decode(msgspec.json.encode(b)) for b in built]
    assert batches[0].metric[0] is not batches[1].metric[0]
    _assert_same(batches)
    _assert_same(built)


_names = st.sampled_from(METRICS)


@st.composite
def _polls(draw: st.DrawFn) -> list[ReadingBatch]:
    shape = draw(st.sampled_from(["one metric", "one per batch", "mixed"]))
    poll_metric, poll_kind = draw(_names), draw(st.sampled_from(KINDS))
    batches = []
    for i in range(draw(st.integers(0, 12))):
        n = draw(st.integers(0, 5))
        if shape == "one metric":
            metric, kind = [poll_metric] * n, [poll_kind] * n
        elif shape == "one per batch":
            metric, kind = [draw(_names)] * n, [draw(st.sampled_from(KINDS))] * n
        else:
            metric = draw(st.lists(_names, min_size=n, max_size=n))
            kind = draw(st.lists(st.sampled_from(KINDS), min_size=n, max_size=n))
        ints = st.integers(-(2**63), 2**63 - 1)
        batches.append(
            ReadingBatch(
                tenant=draw(st.sampled_from(["paris-energy-1", "lyon-1"])),
                city="paris",
                device_id=draw(st.sampled_from(["a", "b", f"device-with-a-long-id-{i}"])),
                gateway_id="g",
                received_at_ms=draw(ints),
                metric=metric,
                ts_ms=draw(st.lists(ints, min_size=n, max_size=n)),
                value=draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)),
                unit=["kWh"] * n,
                kind=kind,
                seq=draw(st.lists(st.integers(NO_SEQ, 2**31), min_size=n, max_size=n)),
            )
        )
    return batches


@settings(max_examples=300, deadline=None)
@given(_polls())
def test_random_polls_decode_as_before_and_as_row_by_row(batches: list[ReadingBatch]) -> None:
    _assert_same(batches)
