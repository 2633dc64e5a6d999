"""Per-partition event-time state, rebuilt from the database rather than kept in Kafka.

A processor keeps one :class:`~processors.kernels.EventTimeState` per assigned partition. After an
assignment the states start empty, and the first time a device shows up its state is rebuilt
("rehydrated") from the readings stored in TimescaleDB, which are exactly the accepted readings up
to the stored offsets (they commit in one transaction):

- the device's watermark is its largest stored event time;
- the readings from ``floor(watermark - lateness - widest window) - margin`` on are replayed through
  :func:`~processors.kernels.step`: the windows still open or within the lateness are complete
  in that replay, so their buffer, emitted results and counters' predecessors ("anchors") equal
  those of an uninterrupted run; the margin gives the anchors (stuck runs, last counter value).

On assignment, devices heard from recently (event time within ``recent_ms`` of the newest stored
reading) are rebuilt at once (:func:`recent_devices`, mapped to partitions like Kafka's default
partitioner), so their open windows still close on the idle timer even if they never send again.

The windows the replay emits are discarded (they are stored already). Two things are not rebuilt:
a watermark pushed by the idle timer (the window is closed again later with the same values, an
unchanged upsert) and the reporting interval inferred from a device's first readings (re-inferred
from the replay; equal for devices reporting at a regular interval).
"""

from __future__ import annotations

import polars as pl
import psycopg
from aiokafka.partitioner import murmur2

from pilotstream.vocab import METRICS
from processors.kernels import EventTimeParams, EventTimeState, step
from processors.kernels.decode import READING_SCHEMA

_HISTORY = """
SELECT r.tenant, d.id AS device_id, r.metric,
    (extract(epoch FROM r.ts) * 1000)::bigint AS ts_ms, r.value, r.seq,
    (extract(epoch FROM r.received_at) * 1000)::bigint AS received_at_ms
FROM unnest(%(ids)s::text[]) AS d(id)
CROSS JOIN LATERAL (SELECT max(ts) AS wm FROM readings WHERE device_id = d.id) w
JOIN LATERAL (
    SELECT tenant, metric, ts, value, seq, received_at FROM readings
    WHERE device_id = d.id AND w.wm IS NOT NULL
      AND ts >= to_timestamp(
          (floor((extract(epoch FROM w.wm) * 1000 - %(back_ms)s) / %(widest_ms)s) * %(widest_ms)s
           - %(margin_ms)s) / 1000.0)
) r ON true
ORDER BY d.id, r.metric, r.ts
"""


_RECENT = """
SELECT DISTINCT device_id FROM readings
WHERE ts >= (SELECT max(ts) FROM readings) - make_interval(secs => %s / 1000.0)
"""


def partition_of(device_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed by ``device_id``."""
    return int(murmur2(device_id.encode()) & 0x7FFFFFFF) % partitions


async def recent_devices(
    conn: psycopg.AsyncConnection, *, partitions: list[int], n_partitions: int, recent_ms: int
) -> dict[int, list[str]]:
    """Devices with readings within ``recent_ms`` of the newest one, by assigned partition."""
    cur = await conn.execute(_RECENT, (recent_ms,))
    wanted = set(partitions)
    out: dict[int, list[str]] = {p: [] for p in partitions}
    for (device,) in await cur.fetchall():  # one row per device, not per reading
        p = partition_of(device, n_partitions)
        if p in wanted:
            out[p].append(device)
    return out


def merge(a: EventTimeState, b: EventTimeState) -> EventTimeState:
    """Union of two states over disjoint devices (costs what ``b`` holds: ``a`` is kept coded)."""
    return a.merged(b)


def known_devices(state: EventTimeState) -> pl.Series:
    """Devices the state has seen (their watermark is known)."""
    return state.devices()


def rebuild(history: pl.DataFrame, *, now_ms: int, params: EventTimeParams) -> EventTimeState:
    """A state equal to the one that produced ``history`` (see module doc); pure."""
    if history.is_empty():
        return EventTimeState()
    latest = int(history["ts_ms"].max())  # type: ignore[arg-type]
    return step(EventTimeState(), history, now_ms=max(now_ms, latest), params=params).state


async def load_history(
    conn: psycopg.AsyncConnection, device_ids: list[str], *, params: EventTimeParams, margin_ms: int
) -> pl.DataFrame:
    """Stored readings needed to rebuild the devices' state, as a reading frame."""
    widest_ms = max(params.widths_s) * 1000
    cur = await conn.execute(
        _HISTORY,
        {
            "ids": device_ids,
            "back_ms": params.allowed_lateness_ms + widest_ms,
            "widest_ms": widest_ms,
            "margin_ms": margin_ms,
        },
    )
    rows = await cur.fetchall()
    cols = ["tenant", "device_id", "metric", "ts_ms", "value", "seq", "received_at_ms"]
    frame = pl.DataFrame(
        rows, schema={c: READING_SCHEMA[c] for c in cols}, orient="row"
    ).with_columns(kind=pl.col("metric").replace_strict(_KINDS, default="gauge"))
    return frame.select(list(READING_SCHEMA))


_KINDS = {name: spec.kind for name, spec in METRICS.items()}
