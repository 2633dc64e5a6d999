"""The disk spool: order, bound, restart, torn tail, segment clean-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.spool import Record, Spool

_OPEN: list[Spool] = []


@pytest.fixture(autouse=True)
def _close_spools() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _spool(path: Path, **kw: object) -> Spool:
    args: dict[str, object] = {"max_bytes": 64 * 1024, "segment_bytes": 4096, "fsync": "always"}
    args.update(kw)
    s = Spool(path=path, **args)  # type: ignore[arg-type]
    _OPEN.append(s)
    return s


def _recs(n: int, start: int = 0) -> list[Record]:
    return [
        Record("t.readings", f"k{i}".encode(), f"value-{i}".encode() * 5)
        for i in range(start, start + n)
    ]


def test_round_trip_in_order_across_segments(tmp_path: Path) -> None:
    s = _spool(tmp_path)
    for i in range(0, 200, 10):
        assert s.append(_recs(10, i))
    assert s.depth == 200
    assert len(list(tmp_path.glob("*.seg"))) > 1
    got: list[Record] = []
    while s.depth:
        recs, pos, size = s.read(37)
        got += recs
        s.commit(pos, len(recs), size)
    assert got == _recs(200)
    assert s.bytes == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # consumed segments deleted


def test_restart_resumes_at_the_committed_cursor(tmp_path: Path) -> None:
    s = _spool(tmp_path)
    s.append(_recs(50))
    recs, pos, size = s.read(20)
    s.commit(pos, len(recs), size)
    s.close()
    s2 = _spool(tmp_path)
    assert s2.depth == 30
    recs, _, _ = s2.read(100)
    assert recs == _recs(30, 20)


def test_torn_tail_is_cut(tmp_path: Path) -> None:
    s = _spool(tmp_path)
    s.append(_recs(5))
    s.close()
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data + data[:30])  # half a record, as after a crash mid-write
    s2 = _spool(tmp_path)
    assert s2.depth == 5
    assert seg.stat().st_size == len(data)
    s2.append(_recs(1, 5))
    recs, _, _ = s2.read(10)
    assert recs == _recs(6)


def test_corrupt_record_is_cut(tmp_path: Path) -> None:
    s = _spool(tmp_path)
    s.append(_recs(3))
    s.close()
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF  # flip a byte in the last record: CRC mismatch
    seg.write_bytes(bytes(data))
    assert _spool(tmp_path).depth == 2


def test_bound_refuses_whole_appends(tmp_path: Path) -> None:
    s = _spool(tmp_path, max_bytes=4096)
    n = 0
    while s.append(_recs(1, n)):
        n += 1
    assert 0 < s.bytes <= 4096
    assert s.depth == n
    recs, pos, size = s.read(5)
    s.commit(pos, len(recs), size)
    assert s.append(_recs(1, 999))


def test_rejects_bad_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        _spool(tmp_path, fsync="sometimes")
