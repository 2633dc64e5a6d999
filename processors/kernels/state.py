"""The event-time state of a partition, kept as numbers between batches.

A processor steps its state once per poll, so the state is stored the way :func:`step` uses it:
readings and emitted windows as frames of numbers with key and label codes
(:mod:`processors.kernels.catalog`), watermarks per device code and per-key tables (intervals,
register maxima, reference statistics) per key code. Nothing is re-indexed by string per poll.

The frames with strings (``buffer``, ``emitted``, ``watermarks``, ``intervals``) are built on
first access, for tests, merges and inspection; a state built from such frames codes them once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from processors.kernels.catalog import Catalog
from processors.kernels.decode import READING_SCHEMA
from processors.kernels.windows import WINDOW_SCHEMA

NO_WATERMARK = np.iinfo(np.int64).min  # a device without a watermark (none, or null)
NEVER = np.iinfo(np.int64).max  # a device whose last-seen time is null: never idle

# 32 bytes a row: the buffer holds every reading of the widest window plus the lateness (with
# 1-minute readings, 120 per device), so its width is most of a processor's memory. What windows
# need only: a reading's sequence number and receive time stay with the stored readings.
BUFFER_SCHEMA: dict[str, pl.DataType] = {
    "code": pl.Int32(),  # key code
    "label": pl.Int32(),  # label code (tenant, kind)
    "ts_ms": pl.Int64(),
    "value": pl.Float64(),
    "anchor": pl.Boolean(),  # final before this batch, kept as a predecessor
    # how it last cleaned (closing.cleaning_fingerprint of amount, flags and counter predecessor):
    # windows of rows cleaned alike are not built again; UNCLEANED: never cleaned
    "cleaned": pl.UInt64(),
}
# the buffer's columns as strings (``EventTimeState.buffer``)
BUFFER_COLUMNS = [c for c in READING_SCHEMA if c not in ("seq", "received_at_ms")] + ["anchor"]
UNCLEANED = {"cleaned": np.uint64(0)}  # no fingerprint is 0
EMITTED_SCHEMA: dict[str, pl.DataType] = {
    "code": pl.Int64(),
    "label": pl.Int64(),
    **{
        k: v for k, v in WINDOW_SCHEMA.items() if k not in ("tenant", "device_id", "metric", "kind")
    },
    "revision": pl.Int64(),
}


@dataclass(frozen=True, slots=True)
class Coded:
    """The state as numbers (arrays per key or device code are as long as the catalog's)."""

    catalog: Catalog
    buffer: pl.DataFrame  # BUFFER_SCHEMA rows, any order
    emitted: pl.DataFrame  # EMITTED_SCHEMA rows, any order
    watermark: np.ndarray  # per device, ms (NO_WATERMARK: none)
    last_seen: np.ndarray  # per device, processing ms (NEVER: unknown)
    known: np.ndarray  # per device: it has a watermark row
    interval: np.ndarray  # per key, frozen expected step, ms (NaN: not frozen)
    register_max: np.ndarray  # per key (NaN: unknown)
    median: np.ndarray  # per key, reference median of the amounts (NaN: unknown)
    iqr: np.ndarray  # per key, reference interquartile range (NaN: unknown)
    # per key, as of its last close: windows ending before this were closed (NO_WATERMARK: none)
    closed_until: np.ndarray
    settled: np.ndarray  # per key: its interval was frozen when it was last closed

    def grown(self, catalog: Catalog) -> Coded:
        """The same state over a catalog with more codes (new codes know nothing)."""
        keys = catalog.n_keys - len(self.interval)
        devices = catalog.n_devices - len(self.watermark)
        if keys == 0 and devices == 0:
            return replace(self, catalog=catalog)

        def more(a: np.ndarray, n: int, fill: Any) -> np.ndarray:
            return np.concatenate([a, np.full(n, fill, dtype=a.dtype)]) if n else a

        return replace(
            self,
            catalog=catalog,
            watermark=more(self.watermark, devices, NO_WATERMARK),
            last_seen=more(self.last_seen, devices, NEVER),
            known=more(self.known, devices, False),
            interval=more(self.interval, keys, np.nan),
            register_max=more(self.register_max, keys, np.nan),
            median=more(self.median, keys, np.nan),
            iqr=more(self.iqr, keys, np.nan),
            closed_until=more(self.closed_until, keys, NO_WATERMARK),
            settled=more(self.settled, keys, False),
        )


def empty_coded() -> Coded:
    """A state that has seen nothing."""
    return Coded(
        catalog=Catalog(),
        buffer=pl.DataFrame(schema=BUFFER_SCHEMA),
        emitted=pl.DataFrame(schema=EMITTED_SCHEMA),
        watermark=np.zeros(0, np.int64),
        last_seen=np.zeros(0, np.int64),
        known=np.zeros(0, bool),
        interval=np.zeros(0),
        register_max=np.zeros(0),
        median=np.zeros(0),
        iqr=np.zeros(0),
        closed_until=np.zeros(0, np.int64),
        settled=np.zeros(0, bool),
    )


class EventTimeState:
    """What a processor keeps per partition between batches (rebuilt from the DB on assignment).

    Built from frames (all optional) or returned by :func:`~processors.kernels.step`; the frames
    read back are equal to the ones given, up to row order (a repeated key or device: its first
    row counts).

    Attributes:
        buffer: readings of windows that may still change, plus a few final "anchor" readings per
            key (predecessors for counter consumption, gaps and stuck runs).
        emitted: last emitted result per window still within the lateness, with its revision.
        watermarks: (device_id, watermark_ms, last_seen_ms).
        intervals: (device_id, metric, interval_ms) expected steps; inferred once, then frozen.
        register_max: optional (device_id, metric, register_max) known register maxima.
        reference: optional (device_id, metric, median, iqr) from history for spike detection
            (without it no spikes are flagged: statistics of a batch depend on the batching).
    """

    __slots__ = ("_frames", "coded", "reference", "register_max")

    coded: Coded
    register_max: pl.DataFrame | None
    reference: pl.DataFrame | None

    def __init__(
        self,
        *,
        buffer: pl.DataFrame | None = None,
        emitted: pl.DataFrame | None = None,
        watermarks: pl.DataFrame | None = None,
        intervals: pl.DataFrame | None = None,
        register_max: pl.DataFrame | None = None,
        reference: pl.DataFrame | None = None,
    ) -> None:
        coded = absorb(
            empty_coded(),
            buffer=buffer,
            emitted=emitted,
            watermarks=watermarks,
            intervals=intervals,
            register_max=register_max,
            reference=reference,
        )
        self._set(coded, register_max, reference)

    @classmethod
    def of(
        cls, coded: Coded, register_max: pl.DataFrame | None, reference: pl.DataFrame | None
    ) -> EventTimeState:
        """A state over ``coded`` (the tables as given to the first state)."""
        out = cls.__new__(cls)
        out._set(coded, register_max, reference)
        return out

    def _set(
        self, coded: Coded, register_max: pl.DataFrame | None, reference: pl.DataFrame | None
    ) -> None:
        object.__setattr__(self, "coded", coded)
        object.__setattr__(self, "register_max", register_max)
        object.__setattr__(self, "reference", reference)
        object.__setattr__(self, "_frames", {})

    def __setattr__(self, name: str, value: object) -> None:
        msg = f"EventTimeState is immutable: cannot set {name}"
        raise AttributeError(msg)

    def __repr__(self) -> str:
        c = self.coded
        return (
            f"EventTimeState(keys={c.catalog.n_keys}, buffer={c.buffer.height}, "
            f"emitted={c.emitted.height}, devices={int(c.known.sum())})"
        )

    def merged(self, other: EventTimeState) -> EventTimeState:
        """This state plus ``other``'s rows (of other devices); costs what ``other`` holds."""

        def cat(x: pl.DataFrame | None, y: pl.DataFrame | None) -> pl.DataFrame | None:
            if x is None or y is None:
                return x if y is None else y
            if y.is_empty():
                return x
            return pl.concat([x, y.select(x.columns).cast(x.schema)])

        coded = absorb(
            self.coded,
            buffer=other.buffer,
            emitted=other.emitted,
            watermarks=other.watermarks,
            intervals=other.intervals,
            register_max=other.register_max,
            reference=other.reference,
        )
        return EventTimeState.of(
            coded, cat(self.register_max, other.register_max), cat(self.reference, other.reference)
        )

    def _frame(self, name: str) -> pl.DataFrame:
        frames: dict[str, pl.DataFrame] = self._frames  # type: ignore[attr-defined]
        if name not in frames:
            frames[name] = _BUILDERS[name](self.coded)
        return frames[name]

    @property
    def buffer(self) -> pl.DataFrame:
        """Readings (``BUFFER_COLUMNS``: ``READING_SCHEMA``'s but ``seq`` and ``received_at_ms``,
        and ``anchor``)."""
        return self._frame("buffer")

    @property
    def emitted(self) -> pl.DataFrame:
        """Emitted windows (``WINDOW_SCHEMA`` columns and ``revision``)."""
        return self._frame("emitted")

    @property
    def watermarks(self) -> pl.DataFrame:
        """(device_id, watermark_ms, last_seen_ms), one row per device seen."""
        return self._frame("watermarks")

    @property
    def intervals(self) -> pl.DataFrame:
        """(device_id, metric, interval_ms), one row per key with a known interval."""
        return self._frame("intervals")

    def devices(self) -> pl.Series:
        """Devices with a watermark row (as ``watermarks["device_id"]``, without building it)."""
        return self.coded.catalog.devices.filter(pl.Series(self.coded.known))


def absorb(
    coded: Coded,
    *,
    buffer: pl.DataFrame | None,
    emitted: pl.DataFrame | None,
    watermarks: pl.DataFrame | None,
    intervals: pl.DataFrame | None,
    register_max: pl.DataFrame | None,
    reference: pl.DataFrame | None,
) -> Coded:
    """``coded`` with the rows of these frames added (keys and devices it knows keep theirs)."""
    cat = coded.catalog
    rows: dict[str, pl.DataFrame] = {}
    for name, frame, schema in (
        (
            "buffer",
            buffer,
            {c: {**READING_SCHEMA, "anchor": pl.Boolean()}[c] for c in BUFFER_COLUMNS},
        ),
        ("emitted", emitted, {**WINDOW_SCHEMA, "revision": pl.Int64()}),
    ):
        if frame is None or frame.is_empty():
            continue
        given = frame.select(list(schema)).cast(schema)  # type: ignore[arg-type]
        cat, key, label = cat.code_rows(given)
        target = BUFFER_SCHEMA if name == "buffer" else EMITTED_SCHEMA
        rows[name] = (
            given.with_columns(
                code=pl.Series(key).cast(target["code"]),
                label=pl.Series(label).cast(target["label"]),
            )
            .with_columns(
                pl.lit(v, target[c]).alias(c) for c, v in UNCLEANED.items() if name == "buffer"
            )
            .select(list(target))
        )
    tables: dict[str, tuple[np.ndarray, pl.DataFrame]] = {}
    for name, table in (
        ("intervals", intervals),
        ("register_max", register_max),
        ("reference", reference),
    ):
        if table is not None and not table.is_empty():
            cat, key, _ = cat.code_rows(table, labels=False)
            tables[name] = (key, table)
    device = None
    if watermarks is not None and not watermarks.is_empty():
        cat, device = cat.with_devices(watermarks["device_id"])

    out = coded.grown(cat)
    changes: dict[str, Any] = {}
    for name, part in rows.items():
        current: pl.DataFrame = getattr(out, name)
        changes[name] = part if current.is_empty() else pl.concat([current, part])
    for name, column, field_name in (
        ("intervals", "interval_ms", "interval"),
        ("register_max", "register_max", "register_max"),
        ("reference", "median", "median"),
        ("reference", "iqr", "iqr"),
    ):
        if name in tables:
            key, table = tables[name]
            values = table[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
            changes[field_name] = _fill(getattr(out, field_name), key, values)
    if device is not None and watermarks is not None:
        first = _first_rows(device, ~out.known[device])
        at = device[first]
        wm = watermarks["watermark_ms"].cast(pl.Int64).fill_null(NO_WATERMARK).to_numpy()
        seen = watermarks["last_seen_ms"].cast(pl.Int64).fill_null(NEVER).to_numpy()
        changes["watermark"] = out.watermark.copy()
        changes["watermark"][at] = wm[first]
        changes["last_seen"] = out.last_seen.copy()
        changes["last_seen"][at] = seen[first]
        changes["known"] = out.known.copy()
        changes["known"][at] = True
    return replace(out, **changes)


def _first_rows(code: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of the first row of each code, among the rows where ``wanted``."""
    _, first = np.unique(code, return_index=True)
    out: np.ndarray = first[wanted[first]]
    return out


def _fill(per_code: np.ndarray, code: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``per_code`` with NaN entries taken from the first row of their code in (code, values)."""
    first = _first_rows(code, np.isnan(per_code[code]))
    out = per_code.copy()
    out[code[first]] = values[first]
    return out


def _strings(coded: Coded, frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``frame`` (with code and label) with its strings gathered from the catalog."""
    cat = coded.catalog
    keys = cat.keys[frame["code"].to_numpy()]
    labels = cat.labels[frame["label"].to_numpy()]
    return pl.concat([keys, labels, frame.drop("code", "label")], how="horizontal").select(columns)


def _buffer_frame(coded: Coded) -> pl.DataFrame:
    return _strings(coded, coded.buffer, BUFFER_COLUMNS)


def _emitted_frame(coded: Coded) -> pl.DataFrame:
    return _strings(coded, coded.emitted, [*WINDOW_SCHEMA, "revision"])


def _watermarks_frame(coded: Coded) -> pl.DataFrame:
    at = np.flatnonzero(coded.known)
    wm = pl.Series(coded.watermark[at], dtype=pl.Int64)
    seen = pl.Series(coded.last_seen[at], dtype=pl.Int64)
    return pl.DataFrame(
        {
            "device_id": coded.catalog.devices.gather(at),
            "watermark_ms": wm.set(wm == NO_WATERMARK, None),
            "last_seen_ms": seen.set(seen == NEVER, None),
        }
    )


def _intervals_frame(coded: Coded) -> pl.DataFrame:
    at = np.flatnonzero(~np.isnan(coded.interval))
    return coded.catalog.keys[at].with_columns(
        interval_ms=pl.Series(coded.interval[at]).cast(pl.Int64)
    )


_BUILDERS = {
    "buffer": _buffer_frame,
    "emitted": _emitted_frame,
    "watermarks": _watermarks_frame,
    "intervals": _intervals_frame,
}
