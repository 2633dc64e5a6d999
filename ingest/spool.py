"""A bounded, durable, append-only disk spool of Kafka records, read back in order.

Layout: ``{dir}/{n:012d}.seg`` segment files of length-prefixed records
(``<u32 length><u32 crc32>`` + body, body = ``<u16 topic length>topic<u16 key length>key value``)
and a ``cursor`` file (``segment offset``), replaced atomically, marking what Kafka has acked.
A torn or corrupt tail (crash mid-write) is cut at start-up; consumed segments are deleted.

fsync policy (``fsync``): ``always`` fsyncs each append before returning, so a record the gateway
acks to MQTT survives a power cut; ``interval`` fsyncs at most every ``fsync_interval_ms`` (a power
cut may lose that much, a process crash loses nothing: the page cache keeps it); ``never`` leaves it
to the OS. The bound counts unconsumed bytes: :meth:`Spool.append` returns False when full and
the caller applies its overflow policy.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pilotstream.logs import get_logger

_HEAD = struct.Struct("<II")
_U16 = struct.Struct("<H")
_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record to send: topic, key, value."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the spool: segment number and byte offset."""

    segment: int
    offset: int


class Spool:
    """Append records; read them back in order; commit what was forwarded."""

    def __init__(
        self,
        *,
        path: Path,
        max_bytes: int,
        segment_bytes: int = 16 * 2**20,
        fsync: str = "always",
        fsync_interval_ms: int = 200,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            msg = f"fsync must be always, interval or never, not {fsync!r}"
            raise ValueError(msg)
        if max_bytes < segment_bytes or segment_bytes < 4096:
            msg = "need max_bytes >= segment_bytes >= 4096"
            raise ValueError(msg)
        self.path = path
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._fsync_interval_s = fsync_interval_ms / 1000.0
        self._last_sync = 0.0
        path.mkdir(parents=True, exist_ok=True)
        self._read = self._load_cursor()
        self.depth = 0  # records not yet committed
        self.bytes = 0  # their bytes on disk
        self._recover()
        last = self._segments()[-1] if self._segments() else self._read.segment
        self._write_seg = last
        self._writer = open(self._seg_path(last), "ab")  # noqa: SIM115 (held open for appends)

    # ---- writing --------------------------------------------------------------------------
    def append(self, records: Sequence[Record]) -> bool:
        """Append records (all or none) per the fsync policy; False when it would overflow."""
        blobs = [_frame(r) for r in records]
        size = sum(len(b) for b in blobs)
        if self.bytes + size > self.max_bytes:
            return False
        if self._writer.tell() > 0 and self._writer.tell() + size > self.segment_bytes:
            self._roll()
        self._writer.write(b"".join(blobs))
        self._writer.flush()
        self._sync()
        self.depth += len(records)
        self.bytes += size
        return True

    def _sync(self) -> None:
        now = time.monotonic()
        if self.fsync == "always" or (
            self.fsync == "interval" and now - self._last_sync >= self._fsync_interval_s
        ):
            os.fsync(self._writer.fileno())
            self._last_sync = now

    def _roll(self) -> None:
        self._sync_file()
        self._writer.close()
        self._write_seg += 1
        self._writer = open(self._seg_path(self._write_seg), "ab")  # noqa: SIM115
        _fsync_dir(self.path)

    def _sync_file(self) -> None:
        if self.fsync != "never":
            os.fsync(self._writer.fileno())

    # ---- reading --------------------------------------------------------------------------
    def read(self, max_records: int) -> tuple[list[Record], Position, int]:
        """Up to ``max_records`` from the read cursor, the position after them and their bytes
        (pass both to :meth:`commit` once Kafka has acked them)."""
        out: list[Record] = []
        pos, size = self._read, 0
        while len(out) < max_records and len(out) < self.depth:
            with open(self._seg_path(pos.segment), "rb") as f:
                f.seek(pos.offset)
                at = 0
                while len(out) < max_records:
                    rec, used = _read_one(f)
                    if rec is None:
                        break
                    out.append(rec)
                    at += used
            size += at
            pos = Position(pos.segment, pos.offset + at)
            if len(out) >= max_records or pos.segment >= self._write_seg:
                break
            pos = Position(pos.segment + 1, 0)  # an older segment is read to its end
        return out, pos, size

    def commit(self, pos: Position, records: int, size: int) -> None:
        """Mark everything before ``pos`` as forwarded; delete whole consumed segments."""
        tmp = self.path / "cursor.tmp"
        tmp.write_text(f"{pos.segment} {pos.offset}\n")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(self.path / "cursor")
        for seg in self._segments():
            if seg < pos.segment:
                self._seg_path(seg).unlink(missing_ok=True)
        self._read = pos
        self.depth = max(0, self.depth - records)
        self.bytes = max(0, self.bytes - size)
        if self.depth == 0:
            self.bytes = 0

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the open segment (idempotent)."""
        if self._writer.closed:
            return
        self._writer.flush()
        self._sync_file()
        self._writer.close()

    # ---- start-up -------------------------------------------------------------------------
    def _seg_path(self, n: int) -> Path:
        return self.path / f"{n:012d}.seg"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.path.glob("*.seg"))

    def _load_cursor(self) -> Position:
        try:
            seg, off = (self.path / "cursor").read_text().split()
            return Position(int(seg), int(off))
        except (FileNotFoundError, ValueError):
            segs = self._segments()
            return Position(segs[0] if segs else 0, 0)

    def _recover(self) -> None:
        """Count what is left to forward; cut a torn or corrupt tail."""
        for seg in self._segments():
            if seg < self._read.segment:
                self._seg_path(seg).unlink()
                continue
            data = self._seg_path(seg).read_bytes()
            at = self._read.offset if seg == self._read.segment else 0
            while at < len(data):
                rec, used = _unframe(data, at)
                if rec is None:
                    _log.warning("spool_tail_cut", segment=seg, offset=at, dropped=len(data) - at)
                    with open(self._seg_path(seg), "r+b") as f:
                        f.truncate(at)
                    break
                self.depth += 1
                self.bytes += used
                at += used
        if self.depth:
            _log.info("spool_recovered", records=self.depth, bytes=self.bytes)


def _frame(r: Record) -> bytes:
    topic = r.topic.encode()
    body = _U16.pack(len(topic)) + topic + _U16.pack(len(r.key)) + r.key + r.value
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _unframe(data: bytes, at: int) -> tuple[Record | None, int]:
    """The record at ``at`` and its framed size, or (None, 0) if torn or corrupt."""
    if at + _HEAD.size > len(data):
        return None, 0
    length, crc = _HEAD.unpack_from(data, at)
    start, end = at + _HEAD.size, at + _HEAD.size + length
    if end > len(data):
        return None, 0
    body = data[start:end]
    if zlib.crc32(body) != crc or length < 4:
        return None, 0
    (tlen,) = _U16.unpack_from(body, 0)
    topic = body[2 : 2 + tlen].decode()
    (klen,) = _U16.unpack_from(body, 2 + tlen)
    key = body[4 + tlen : 4 + tlen + klen]
    return Record(topic, key, body[4 + tlen + klen :]), end - at


def _read_one(f: BinaryIO) -> tuple[Record | None, int]:
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size:
        return None, 0
    length, _ = _HEAD.unpack(head)
    return _unframe(head + f.read(length), 0)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
