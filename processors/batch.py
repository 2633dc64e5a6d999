"""One poll of Kafka records -> one database transaction: the processor's work without Kafka.

:class:`BatchProcessor` owns the per-partition event-time states and, for each poll, decodes the
records into one frame per partition, rebuilds the state of devices it has not seen since the
assignment (:mod:`processors.state`), runs :func:`~processors.kernels.step`, scores the closed
windows (baseline, factor, delta) and writes readings, windows, rejections and the next offsets
with ONE ``commit_batch``. It returns the changed windows as deltas to publish after the commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import polars as pl

from pilotstream.contracts import WindowDelta
from pilotstream.logs import get_logger
from pilotstream.registry import Registry
from processors.allocator import give_back
from processors.baseline_provider import BaselineProvider
from processors.factors import FactorTable
from processors.kernels import (
    EventTimeParams,
    EventTimeState,
    MetricRule,
    close_idle,
    emission_deltas,
    pilot_rules,
    step,
)
from processors.kernels.decode import READING_SCHEMA
from processors.kernels.windows import empty_windows
from processors.records import TextColumns, decode_records
from processors.sink import (
    BadRecord,
    bad_batch_rows,
    readings_rows,
    rejection_rows,
    window_deltas,
    window_rows,
)
from processors.state import known_devices, merge, rebuild
from storage.writer import CommitResult, Writer

log = get_logger(__name__)
SLOW_PREPARE_S = 1.0  # a prepare this long is logged with its parts
History = Callable[[list[str]], Awaitable[pl.DataFrame]]  # device ids -> stored readings


class Record(NamedTuple):
    """The parts of a Kafka record the processor uses (a tuple: one is made per Kafka record,
    and a frozen dataclass costs ~10 us each, 0.5 s per 2M readings)."""

    offset: int  # Kafka offset
    key: bytes | None  # device id
    value: bytes  # a ReadingBatch as JSON
    timestamp_ms: int  # Kafka record timestamp, UTC ms


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one committed poll did."""

    commit: CommitResult | None  # None when there was nothing to write
    deltas: list[WindowDelta]  # windows the commit inserted or revised
    readings: int  # readings decoded
    records: int  # Kafka records
    windows: int  # windows closed or restated by the kernels
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count


@dataclass(frozen=True, slots=True)
class Prepared:
    """One poll's payload, ready for :meth:`BatchProcessor.commit`."""

    readings: pl.DataFrame | None  # readings to store
    scored: pl.DataFrame | None  # closed or restated windows with baseline, factor and delta
    rejections: pl.DataFrame | None  # rejection rows
    offsets: dict[tuple[str, int], int]  # next offset per (topic, partition)
    records: int  # Kafka records in the poll
    reasons: dict[str, int]  # rejections by reason


class BatchProcessor:
    """Per-partition state plus the poll -> commit mapping (see module doc)."""

    def __init__(
        self,
        *,
        writer: Writer,
        provider: BaselineProvider,
        registry: Registry,
        factors: FactorTable,
        params: EventTimeParams,
        topic: str,
        group: str,
        history: History | None = None,
        dead_letter_max_bytes: int = 4096,
        deltas: bool = True,
    ):
        if not topic or not group:
            msg = "topic and group must not be empty"
            raise ValueError(msg)
        self._writer = writer
        self._provider = provider
        self._params = params
        self._factors = factors
        self._topic = topic
        self._group = group
        self._history = history
        self._max_bytes = dead_letter_max_bytes
        self._deltas = deltas  # False: no deltas topic, so no WindowDelta objects are built
        self._rules: dict[str, dict[str, MetricRule]] = {
            t: pilot_rules(p, registry.cities[p.city]) for t, p in registry.pilots.items()
        }
        self.states: dict[int, EventTimeState] = {}
        self._text = TextColumns()  # decoded metric/unit/kind columns, by their JSON bytes
        self.generation = -1
        self.next_offsets: dict[int, int] = {}

    def assign(
        self, partitions: Sequence[int], generation: int, offsets: Mapping[int, int] | None = None
    ) -> None:
        """Start the given partitions with empty states (devices are rebuilt on first sight).

        ``offsets`` are the next offsets to process per partition: records below them (already
        committed; a consumer may redeliver a fetch made before its seek) are skipped.
        """
        self.generation = generation
        self.states = {p: EventTimeState() for p in partitions}
        self.next_offsets = {p: (offsets or {}).get(p, 0) for p in partitions}

    def revoke(self, partitions: Sequence[int]) -> None:
        """Forget the partitions' state (their next owner rebuilds it from the database)."""
        for p in partitions:
            self.states.pop(p, None)
            self.next_offsets.pop(p, None)

    async def preload(self, devices: Mapping[int, list[str]], *, now_ms: int) -> int:
        """Rebuild the state of these devices per partition now (see :mod:`processors.state`)."""
        if self._history is None:
            return 0
        n = 0
        for partition, ids in devices.items():
            if partition not in self.states or not ids:
                continue
            history = await self._history(ids)
            if history.height:
                rebuilt = rebuild(history, now_ms=now_ms, params=self._params)
                self.states[partition] = merge(self.states[partition], rebuilt)
                n += len(ids)
        return n

    async def process(self, polled: Mapping[int, Sequence[Record]], *, now_ms: int) -> PollResult:
        """Decode, run the kernels, score and commit one poll (records of assigned partitions)."""
        return await self.commit(await self.prepare(polled, now_ms=now_ms))

    async def prepare(
        self, polled: Mapping[int, Sequence[Record]], *, now_ms: int
    ) -> Prepared | None:
        """Everything of one poll but the commit; advances the states (None: nothing to write).

        The runner commits a prepared poll while it prepares the next one; commits stay in order
        and a failed commit ends the process (its state is rebuilt from the database).
        """
        bad: list[BadRecord] = []
        offsets: dict[tuple[str, int], int] = {}
        todo: dict[int, list[Record]] = {}
        t0 = time.monotonic()
        for partition, polled_records in polled.items():
            if partition not in self.states:
                continue
            floor = self.next_offsets.get(partition, 0)
            records = [r for r in polled_records if r.offset >= floor]  # loop over Kafka records
            if records:
                todo[partition] = records
                offsets[(self._topic, partition)] = records[-1].offset + 1
                self.next_offsets[partition] = records[-1].offset + 1
        if not offsets:
            return None
        n_records = sum(map(len, todo.values()))
        # The CPU-heavy parts run in a worker thread (numpy and polars release the GIL), so the
        # event loop keeps the consumer's heartbeats going through a long poll; one hand-over
        # per phase for all partitions, not one per partition.
        decoded = await asyncio.to_thread(self._decode_all, todo, bad)
        give_back()  # the records' decoding garbage, before the steps allocate
        t1 = time.monotonic()
        for partition, (_, _, new) in decoded.items():
            if new:
                self.states[partition] = await self._rehydrate(self.states[partition], new, now_ms)
        t2 = time.monotonic()
        frames, windows, rejected = await asyncio.to_thread(self._step_all, decoded, now_ms)
        give_back()  # the step's freed arrays, before the next poll allocates again
        spent = {"decode": t1 - t0, "rehydrate": t2 - t1, "step": time.monotonic() - t2}
        readings = pl.concat(frames) if frames else None
        t = time.monotonic()
        prepared = await self._prepared(readings, windows, rejected, bad, offsets, n_records)
        if time.monotonic() - t0 >= SLOW_PREPARE_S:  # where a latency spike came from
            log.warning(
                "slow_prepare",
                partitions=len(offsets),
                readings=0 if readings is None else readings.height,
                score_s=round(time.monotonic() - t, 3),
                **{f"{k}_s": round(v, 3) for k, v in spent.items()},
            )
        return prepared

    async def close_idle(self, *, now_ms: int, idle_ms: int) -> PollResult:
        """Close the windows of devices silent for ``idle_ms`` (0: every open window) and commit."""
        return await self.commit(await self.prepare_idle(now_ms=now_ms, idle_ms=idle_ms))

    async def prepare_idle(self, *, now_ms: int, idle_ms: int) -> Prepared | None:
        """The idle timer's windows, ready to commit (None: none closed)."""
        windows = []
        for partition, state in self.states.items():
            result = close_idle(state, now_ms=now_ms, idle_ms=idle_ms, params=self._params)
            self.states[partition] = result.state
            windows.append(result.windows)
        if not any(w.height for w in windows) and not self._provider.pending():
            return None  # (windows waiting for a baseline are retried here)
        return await self._prepared(None, windows, [], [], {}, 0)

    def pending_baselines(self) -> int:
        """Windows stored without a baseline that the provider may still score."""
        return self._provider.pending()

    async def commit(
        self, prepared: Prepared | None, *, writer: Writer | None = None
    ) -> PollResult:
        """Write a prepared poll in ONE transaction; the changed windows become deltas.

        ``writer`` (default: the constructor's) lets the runner commit the polls of disjoint
        partitions on several connections at once.
        """
        if prepared is None:
            return PollResult(None, [], 0, 0, 0)
        p = prepared
        rows = window_rows(p.scored) if p.scored is not None else None
        commit = await (writer or self._writer).commit_batch(
            readings=p.readings,
            windows=rows,
            rejections=p.rejections,
            offsets=p.offsets,
            group=self._group,
            generation=self.generation,
        )
        deltas = []
        if rows is not None and self._deltas:
            deltas = window_deltas(rows, commit.windows_changed)
        return PollResult(
            commit,
            deltas,
            readings=0 if p.readings is None else p.readings.height,
            records=p.records,
            windows=0 if p.scored is None else p.scored.height,
            rejected=p.reasons,
        )

    async def _prepared(
        self,
        readings: pl.DataFrame | None,
        windows: list[pl.DataFrame],
        rejected: list[pl.DataFrame],
        bad: list[BadRecord],
        offsets: dict[tuple[str, int], int],
        n_records: int,
    ) -> Prepared:
        closed = pl.concat(windows) if windows else empty_windows()
        scored = None
        if closed.height or self._provider.pending():
            scored = await self.score(closed)
            scored = scored if scored.height else None
        refused = pl.concat(rejected) if rejected else pl.DataFrame()
        parts = []
        if refused.height:
            parts.append(rejection_rows(refused, topic=self._topic, max_bytes=self._max_bytes))
        if bad:
            parts.append(bad_batch_rows(bad, topic=self._topic, max_bytes=self._max_bytes))
        reasons: dict[str, int] = {}
        if refused.height:
            reasons = dict(refused.group_by("reason").len().iter_rows())
        if bad:
            reasons["bad_batch"] = len(bad)
        return Prepared(
            readings=readings,
            scored=scored,
            rejections=pl.concat(parts) if parts else None,
            offsets=offsets,
            records=n_records,
            reasons=reasons,
        )

    async def score(self, windows: pl.DataFrame) -> pl.DataFrame:
        """Closed windows + baseline, factor, delta and avoided kgCO2e (0 outside reporting)."""
        pairs = windows.select("tenant", "metric").unique()
        needs = [  # one entry per (tenant, metric) pair, a handful per poll
            (rule := self._rules.get(t, {}).get(m)) is not None
            and rule.saving == "baseline_minus_actual"
            for t, m in pairs.iter_rows()
        ]
        flags = pairs.with_columns(needs_baseline=pl.Series(needs, dtype=pl.Boolean))
        annotated = await self._provider.annotate(
            windows.join(flags, on=["tenant", "metric"], how="left", maintain_order="left")
        )
        if annotated.is_empty():  # nothing closed, no waiting window scored yet
            return annotated
        parts = []
        for (tenant,), group in annotated.group_by("tenant", maintain_order=True):
            rules = self._rules.get(str(tenant), {})
            parts.append(emission_deltas(group, rules=rules, factors=self._factors))
        out = pl.concat(parts)
        outside = ~pl.col("reporting")
        return out.with_columns(
            delta=pl.when(outside).then(0.0).otherwise("delta"),
            avoided_co2e_kg=pl.when(outside).then(0.0).otherwise("avoided_co2e_kg"),
        )

    def _decode_all(
        self, todo: Mapping[int, Sequence[Record]], bad: list[BadRecord]
    ) -> dict[int, tuple[pl.DataFrame, pl.DataFrame, list[str]]]:
        """Per partition: readings, readings refused as ``bad_reading``, devices never seen."""
        out = {}
        for partition, records in todo.items():
            frame, invalid = _columns(partition, records, bad, self._text)
            new: list[str] = []
            if self._history is not None and frame.height:
                seen = frame.select(pl.col("device_id").unique())
                known = known_devices(self.states[partition]).to_frame()
                new = seen.join(known, on="device_id", how="anti")["device_id"].to_list()
            out[partition] = (frame, invalid, new)
        return out

    def _step_all(
        self, decoded: Mapping[int, tuple[pl.DataFrame, pl.DataFrame, list[str]]], now_ms: int
    ) -> tuple[list[pl.DataFrame], list[pl.DataFrame], list[pl.DataFrame]]:
        """Advance each partition's state: (readings to store, windows, refused readings)."""
        frames, windows, rejected = [], [], []
        for partition, (frame, invalid, _) in decoded.items():
            result = step(self.states[partition], frame, now_ms=now_ms, params=self._params)
            self.states[partition] = result.state
            frames.append(readings_rows(frame, result.rejected, result.duplicates))
            windows.append(result.windows)
            rejected.append(pl.concat([result.rejected, invalid.select(result.rejected.columns)]))
        return frames, windows, rejected

    async def _rehydrate(
        self, state: EventTimeState, devices: list[str], now_ms: int
    ) -> EventTimeState:
        """The state plus the rebuilt state of ``devices`` (not seen since the assignment)."""
        if self._history is None:
            return state
        history = await self._history(devices)
        if history.is_empty():
            return state
        return merge(state, rebuild(history, now_ms=now_ms, params=self._params))


def _split_invalid(frame: pl.DataFrame, *, nul: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Readings the database must not receive (non-finite value, NUL in text) -> ``bad_reading``.

    ``nul``: some record of the frame holds an escaped NUL, the only way JSON carries one; the
    per-reading text scan runs only then (it cost 7 % of a processor's CPU on every poll).
    """
    text = ["tenant", "device_id", "metric", "kind"]
    finite = np.isfinite(frame["value"].to_numpy())
    if not nul and finite.all():
        return frame, _NO_INVALID
    bad = pl.Series(~finite)
    if nul:
        bad |= frame.select(
            pl.any_horizontal(pl.col(c).str.contains("\x00", literal=True) for c in text)
        ).to_series()
    invalid = frame.filter(bad).with_columns(
        [pl.col(c).str.replace_all("\x00", "", literal=True) for c in text],
        reason=pl.lit("bad_reading"),
        detail=pl.lit("non-finite value or NUL byte in a text field"),
    )
    return frame.filter(~bad), invalid


_NO_INVALID = pl.DataFrame(schema={**READING_SCHEMA, "reason": pl.String(), "detail": pl.String()})


def _columns(
    partition: int, records: Sequence[Record], bad: list[BadRecord], text: TextColumns
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Kafka records -> (readings the database may take, readings refused as ``bad_reading``)."""
    decoded = decode_records([r.value for r in records], text)
    for i, why in decoded.refused:
        r = records[i]
        bad.append(BadRecord(partition, r.offset, r.key, r.value, why, r.timestamp_ms))
    return _split_invalid(decoded.frame(), nul=decoded.nul)
