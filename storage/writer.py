"""The writer: one transaction per processed batch with readings, window results, rejections and
the batch's consumer offsets, so results and offsets are stored together or not at all.

Readings travel as a binary COPY stream built with numpy (:mod:`storage.pgbinary`), encoded in
chunks while the server ingests the previous one. They are copied straight into the hypertable in
a savepoint; if any is already stored (a redelivery), the savepoint is rolled back and the same
bytes go through the temporary stage table and ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``,
so duplicates are counted, never fatal. Window results are upserted; their revision and
``updated_at`` move only when a value changed, and in the same statement each touched local day
of the daily rollup moves by what its windows changed. Offsets are written last, fenced by the
owner generation (:mod:`storage.offsets`). Input is checked before anything reaches the database
(:mod:`storage.frames`); transient failures are retried with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import polars as pl
import psycopg

from pilotstream.logs import get_logger
from storage import sql_writer as q
from storage.errors import StaleGeneration, StorageError
from storage.frames import (
    READINGS,
    READINGS_DEFAULTS,
    REJECTIONS,
    REJECTIONS_DEFAULTS,
    WINDOW_KEY,
    WINDOWS,
    Columnar,
    conform,
)
from storage.offsets import (
    Claim,
    claim_partitions,
    commit_offsets,
    load_offsets,
    stored_offsets_match,
)
from storage.payloads import ReadingsPayload, windows_payload

log = get_logger(__name__)

READINGS_KEY = ("device_id", "metric", "ts_ms")  # the order of the unique index readings_key
_RETRY_SQLSTATES = ("57P01", "57P02", "57P03")  # admin shutdown, crash shutdown, cannot connect now


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one committed batch changed."""

    readings_new: int  # readings inserted
    readings_duplicate: int  # readings already stored (same device, metric, ts)
    windows_new: int  # window results inserted (revision 1)
    windows_revised: int  # window results whose values changed (revision + 1)
    windows_unchanged: int  # window results resent with identical values
    rejections: int  # dead letters stored
    offsets: int  # partitions whose offsets were stored
    attempts: int  # 1 unless transient errors were retried
    # window results inserted or revised: device_id, metric, width_s, bucket_start_ms, revision
    windows_changed: pl.DataFrame = field(repr=False)


class Writer:
    """Writes processed batches to TimescaleDB; one connection, reconnected on failure.

    Use as ``async with Writer(dsn=settings.pg_dsn) as writer: await writer.commit_batch(...)``.
    """

    def __init__(
        self,
        *,
        dsn: str,
        max_attempts: int = 5,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        optimistic: bool = True,
    ):
        if max_attempts < 1:
            msg = f"max_attempts must be at least 1, not {max_attempts}"
            raise ValueError(msg)
        if backoff_s < 0 or max_backoff_s < backoff_s:
            msg = f"need 0 <= backoff_s <= max_backoff_s, got {backoff_s} and {max_backoff_s}"
            raise ValueError(msg)
        self._dsn = dsn
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._connect_timeout_s = connect_timeout_s
        self._optimistic = optimistic
        self._conn: psycopg.AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        try:
            await self._connection()
        except psycopg.OperationalError as exc:
            msg = f"cannot connect to the database: {exc}"
            raise StorageError(msg, retriable=True) from exc
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def claim(self, *, group: str, topic: str, partitions: Iterable[int]) -> Claim:
        """On partition assignment: a new generation for ``partitions`` and their stored offsets.

        See :func:`storage.offsets.claim_partitions`; pass ``Claim.generation`` to every
        :meth:`commit_batch` for these partitions and seek to ``Claim.offsets``.
        """
        return await claim_partitions(
            await self._connection(), group=group, topic=topic, partitions=partitions
        )

    async def load_offsets(self, *, group: str, topic: str) -> dict[int, int]:
        """Stored next offsets of ``group`` on ``topic``: ``{partition: next_offset}``."""
        conn = await self._connection()
        async with conn.transaction():
            return await load_offsets(conn, group, topic)

    @property
    def backend_pid(self) -> int | None:
        """Server process id of the current connection (for monitoring and tests)."""
        return None if self._conn is None or self._conn.closed else self._conn.info.backend_pid

    async def commit_batch(
        self,
        *,
        readings: Columnar | None,
        windows: Columnar | None = None,
        rejections: Columnar | None = None,
        offsets: Mapping[tuple[str, int], int],
        group: str,
        generation: int,
    ) -> CommitResult:
        """Store one batch and its consumer offsets in a single transaction.

        Args:
            readings: columns of :data:`storage.frames.READINGS` (``seq``, ``quality`` optional).
            windows: columns of :data:`storage.frames.WINDOWS`; a key sent twice keeps the last.
            rejections: columns of :data:`storage.frames.REJECTIONS`.
            offsets: ``{(topic, partition): next_offset}`` reached by this batch.
            group: consumer group id.
            generation: from :func:`storage.offsets.claim_partitions` at assignment.

        A retry after the connection died during COMMIT first checks whether the stored offsets
        already are this batch's (same generation, same next offsets): if so the batch had landed
        and is not written twice (rejections, unlike readings and windows, have no natural key).

        Raises:
            InvalidBatch: NUL in text, non-finite number, null or missing column (nothing written).
            StaleGeneration: a newer consumer owns one of the partitions (rolled back).
            StorageError: the database refused the batch, or stayed unreachable (``retriable``).
        """
        batch = _prepare(readings, windows, rejections)
        attempt = 0
        counts: dict[str, Any] | None = None  # of the last attempt that reached COMMIT
        while True:
            attempt += 1
            try:
                conn = await self._connection()
                if counts is not None and await stored_offsets_match(
                    conn, group=group, generation=generation, offsets=offsets
                ):
                    # the connection died during COMMIT, after the server had committed
                    log.warning("commit_had_landed", attempt=attempt, group=group)
                    return CommitResult(**counts, offsets=len(offsets), attempts=attempt)
                counts = None
                async with conn.transaction():
                    written = await _write(conn, batch, self._optimistic)
                    n_off = await commit_offsets(
                        conn, group=group, generation=generation, offsets=offsets
                    )
                    counts = written
                return CommitResult(**written, offsets=n_off, attempts=attempt)
            except StaleGeneration:
                raise
            except psycopg.Error as exc:
                if not self._transient(exc) or attempt >= self._max_attempts:
                    retriable = self._transient(exc)
                    msg = f"writing the batch failed after {attempt} attempt(s): {exc}"
                    raise StorageError(msg, retriable=retriable) from exc
                delay = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)
                log.warning(
                    "commit_retry", attempt=attempt, delay_s=round(delay, 3), error=str(exc)
                )
                await asyncio.sleep(delay)

    def _transient(self, exc: psycopg.Error) -> bool:
        if isinstance(exc, psycopg.errors.TransactionRollback):  # serialization, deadlock
            return True
        if self._conn is None or self._conn.closed or self._conn.broken:
            return True
        state = exc.sqlstate or ""
        return state.startswith("08") or state in _RETRY_SQLSTATES

    async def _connection(self) -> psycopg.AsyncConnection:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            await conn.close()
            self._conn = None
        conn = await psycopg.AsyncConnection.connect(
            self._dsn, connect_timeout=max(1, int(self._connect_timeout_s))
        )
        async with conn.transaction():
            await conn.execute(q.STAGE_TABLES)
        self._conn = conn
        log.info("writer_connected", backend_pid=conn.info.backend_pid)
        return conn


@dataclass(frozen=True, slots=True)
class _Batch:
    """A checked batch, encoded once (a retry sends the same bytes)."""

    readings: ReadingsPayload | None
    readings_rows: int
    windows: bytes | None  # binary COPY payload, one row per window key
    windows_rows: int
    window_keys: pl.DataFrame | None  # WINDOW_KEY columns of the staged windows
    rejections: list[list[Any]] | None  # one list per INSERT_REJECTIONS parameter
    rejections_rows: int


def _prepare(
    readings: Columnar | None, windows: Columnar | None, rejections: Columnar | None
) -> _Batch:
    rd = wn = rj = None
    if readings is not None:
        rd = conform("readings", readings, READINGS, READINGS_DEFAULTS)
        # In the unique index's order: consecutive rows land on the same btree leaf (a poll
        # interleaves thousands of devices; unsorted, every row descends to a cold leaf), and a
        # COPY chunk holds few (device, metric) combinations to encode. Costs ~0.15 s per
        # 400k rows here; it saved more than twice that in the server's index inserts.
        rd = rd.sort(READINGS_KEY)
    if windows is not None:
        wn = conform("windows", windows, WINDOWS)
        # sorted like the unique index, for the same locality as the readings
        wn = wn.unique(WINDOW_KEY, keep="last", maintain_order=True).sort(WINDOW_KEY)
    if rejections is not None:
        rj = conform("rejections", rejections, REJECTIONS, REJECTIONS_DEFAULTS)
    return _Batch(
        readings=ReadingsPayload(rd) if rd is not None and rd.height else None,
        readings_rows=rd.height if rd is not None else 0,
        windows=windows_payload(wn) if wn is not None and wn.height else None,
        windows_rows=wn.height if wn is not None else 0,
        window_keys=wn.select(WINDOW_KEY) if wn is not None and wn.height else None,
        rejections=[rj[c].to_list() for c in REJECTIONS] if rj is not None and rj.height else None,
        rejections_rows=rj.height if rj is not None else 0,
    )


async def _write(conn: psycopg.AsyncConnection, batch: _Batch, optimistic: bool) -> dict[str, Any]:
    """Readings, windows (+ daily rollup), rejections; the caller adds the offsets."""
    new = 0
    if batch.readings is not None:
        new = await _insert_readings(conn, batch.readings, optimistic)
    changed = _EMPTY_CHANGED
    revised = unchanged = 0
    if batch.windows is not None and batch.window_keys is not None:
        async with conn.cursor().copy(q.COPY_WINDOWS) as copy:
            await copy.write(batch.windows)
        cur = await conn.execute(q.UPSERT_WINDOWS)  # and the daily rollup
        changed, revised, unchanged = _changed_windows(batch.window_keys, await cur.fetchall())
    if batch.rejections is not None:
        await conn.execute(q.INSERT_REJECTIONS, batch.rejections)
    return {
        "readings_new": new,
        "readings_duplicate": batch.readings_rows - new,
        "windows_new": batch.windows_rows - revised - unchanged,
        "windows_revised": revised,
        "windows_unchanged": unchanged,
        "rejections": batch.rejections_rows,
        "windows_changed": changed,
    }


_EMPTY_CHANGED = pl.DataFrame(
    schema={
        "device_id": pl.String,
        "metric": pl.String,
        "width_s": pl.Int32,
        "bucket_start_ms": pl.Int64,
        "revision": pl.Int32,
    }
)


def _changed_windows(
    staged: pl.DataFrame, exceptions: list[tuple[Any, ...]]
) -> tuple[pl.DataFrame, int, int]:
    """The inserted and revised windows with their revision, and how many were revised and
    unchanged, from the staged keys and what UPSERT_WINDOWS returned (revision 0: unchanged)."""
    changed = staged.with_columns(revision=pl.lit(1, pl.Int32))
    if not exceptions:
        return changed, 0, 0
    back = pl.DataFrame(exceptions, schema=_EMPTY_CHANGED.schema, orient="row")
    same = back.filter(pl.col("revision") == 0)
    revised = back.filter(pl.col("revision") > 0)
    key = list(WINDOW_KEY)
    changed = (
        changed.join(same.select(key), on=key, how="anti", maintain_order="left")
        .join(revised, on=key, how="left", maintain_order="left", suffix="_stored")
        .with_columns(revision=pl.coalesce("revision_stored", "revision"))
        .drop("revision_stored")
    )
    return changed, revised.height, same.height


async def _insert_readings(
    conn: psycopg.AsyncConnection, payload: ReadingsPayload, optimistic: bool
) -> int:
    """Readings -> hypertable, duplicates skipped; returns how many were new.

    Optimistic path (default): COPY straight into the hypertable inside a savepoint. With no
    duplicate, the common case, that is all, and it costs about half of staging plus
    ``INSERT ... ON CONFLICT DO NOTHING``, whose speculative insertion probes the unique index for
    every row. A unique violation (redelivered readings, a twice-sent key, a concurrent writer)
    rolls back the savepoint only; the same bytes then go to the temporary stage table and from
    there ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` keeps the new rows.
    """
    if optimistic:
        try:
            async with conn.transaction(), conn.cursor().copy(q.COPY_READINGS_DIRECT) as copy:
                await payload.stream(copy)
            return payload.rows
        except psycopg.errors.UniqueViolation:
            pass
    async with conn.cursor().copy(q.COPY_READINGS) as copy:
        await payload.stream(copy)
    cur = await conn.execute(q.INSERT_READINGS)
    return cur.rowcount
