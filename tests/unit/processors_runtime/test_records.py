"""Record values -> columns gives what decoding each ReadingBatch and ``decode_batches`` give."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pilotstream.codec import decode_batch, encode
from pilotstream.contracts import ReadingBatch
from pilotstream.errors import DecodeError
from processors.kernels import decode_batches
from processors.records import TextColumns, decode_records

NAMES = st.sampled_from(["energy.active.import", "power.active", 'we"ird\\name', "é"])


@st.composite
def batches(draw: st.DrawFn) -> ReadingBatch:
    n = draw(st.integers(0, 5))
    one = draw(st.booleans())  # one metric for the whole batch (the usual case) or mixed
    metric = [draw(NAMES)] * n if one else [draw(NAMES) for _ in range(n)]
    return ReadingBatch(
        tenant=draw(st.sampled_from(["paris-energy-1", "tallinn-mobility-1"])),
        city="paris",
        device_id=draw(st.sampled_from(["d1", "d2", "d\x00"])),
        gateway_id="gw",
        received_at_ms=draw(st.integers(0, 2**40)),
        metric=metric,
        ts_ms=draw(st.lists(st.integers(0, 2**45), min_size=n, max_size=n)),
        value=draw(
            st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=n, max_size=n)
        ),
        unit=[draw(st.sampled_from(["kWh", "kW"]))] * n,
        kind=[draw(st.sampled_from(["counter", "gauge", "delta"]))] * n,
        seq=draw(st.lists(st.integers(-1, 2**40), min_size=n, max_size=n)),
    )


def _broken(b: ReadingBatch, how: int) -> bytes:
    raw = msgspec.json.decode(encode(b))
    if how == 0:
        return b"{not json"
    if how == 1:
        raw["v"] = 99
    elif how == 2:
        raw["unit"] = [*raw["unit"], "kWh"]  # one more unit than readings
    else:
        raw["metric"] = [1] * len(raw["metric"]) or [1]  # not strings
    return msgspec.json.encode(raw)


@given(
    st.lists(
        st.one_of(
            batches().map(encode),
            st.tuples(batches(), st.integers(0, 3)).map(lambda t: _broken(*t)),
        ),
        max_size=12,
    )
)
@settings(max_examples=200, deadline=None)
def test_same_frame_and_refusals_as_decoding_each_batch(values: list[bytes]) -> None:
    good, refused = [], []
    for i, v in enumerate(values):
        try:
            good.append(decode_batch(v))
        except DecodeError:
            refused.append(i)
    text = TextColumns()
    for _ in range(2):  # the second pass reads the text columns from the cache
        out = decode_records(values, text)
        assert [i for i, _ in out.refused] == refused
        assert_frame_equal(out.frame(), decode_batches(good))
        assert out.nul == any(
            b"\\u0000" in values[i] for i in range(len(values)) if i not in refused
        )
