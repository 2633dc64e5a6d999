"""Consumer offsets stored in the database, next to the results they account for, with fencing.

On partition assignment a consumer calls :func:`claim_partitions`: it draws a fresh generation from
a sequence, stamps it on the partitions' rows and gets their stored offsets to seek to. Every later
commit (:func:`commit_offsets`, inside the writer's transaction) succeeds only while the rows still
carry a generation no newer than the committer's: after a rebalance the previous owner's commit
raises :class:`~storage.errors.StaleGeneration` and its whole transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg

from storage.errors import StaleGeneration

_CLAIM = """
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset, generation)
SELECT %(group)s, %(topic)s, p, NULL, %(generation)s FROM unnest(%(partitions)s::int[]) AS u(p)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET generation = EXCLUDED.generation, updated_at = now()
WHERE o.generation < EXCLUDED.generation
RETURNING partition, next_offset
"""

_COMMIT = """
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset, generation)
SELECT %(group)s, t, p, n, %(generation)s
FROM unnest(%(topics)s::text[], %(partitions)s::int[], %(offsets)s::bigint[]) AS u(t, p, n)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, generation = EXCLUDED.generation, updated_at = now()
WHERE o.generation <= EXCLUDED.generation
RETURNING topic, partition
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """What a consumer owns after an assignment."""

    generation: int  # pass to every commit of these partitions
    offsets: dict[int, int]  # partition -> next offset to read; absent: nothing stored yet


async def load_offsets(conn: psycopg.AsyncConnection, group: str, topic: str) -> dict[int, int]:
    """Stored next offsets of a group on a topic: ``{partition: next_offset}``."""
    cur = await conn.execute(
        "SELECT partition, next_offset FROM consumer_offsets "
        "WHERE group_id = %s AND topic = %s AND next_offset IS NOT NULL",
        (group, topic),
    )
    return {int(p): int(n) for p, n in await cur.fetchall()}


async def claim_partitions(
    conn: psycopg.AsyncConnection, *, group: str, topic: str, partitions: Iterable[int]
) -> Claim:
    """Take ownership of ``partitions`` with a new generation; returns it and their offsets.

    Runs in its own transaction (or a savepoint of the caller's). Any holder of an older
    generation can no longer commit these partitions.
    """
    parts = sorted(set(partitions))
    async with conn.transaction():
        cur = await conn.execute("SELECT nextval('consumer_generation_seq')")
        row = await cur.fetchone()
        assert row is not None
        generation = int(row[0])
        cur = await conn.execute(
            _CLAIM,
            {"group": group, "topic": topic, "generation": generation, "partitions": parts},
        )
        rows = await cur.fetchall()
    if len(rows) != len(parts):  # only possible if someone claimed with a hand-made generation
        msg = f"group {group} topic {topic}: a newer generation than {generation} owns partitions"
        raise StaleGeneration(msg)
    return Claim(generation, {int(p): int(n) for p, n in rows if n is not None})


async def stored_offsets_match(
    conn: psycopg.AsyncConnection,
    *,
    group: str,
    generation: int,
    offsets: Mapping[tuple[str, int], int],
) -> bool:
    """True when every partition of ``offsets`` is stored with exactly that next offset and
    ``generation``: the batch that carried them was committed. False for empty ``offsets``."""
    if not offsets:
        return False
    keys = sorted(offsets)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT count(*) FROM consumer_offsets o "
            "JOIN unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, n) "
            "ON o.topic = u.t AND o.partition = u.p AND o.next_offset = u.n "
            "WHERE o.group_id = %s AND o.generation = %s",
            (
                [t for t, _ in keys],
                [p for _, p in keys],
                [offsets[k] for k in keys],
                group,
                generation,
            ),
        )
        row = await cur.fetchone()
    return row is not None and int(row[0]) == len(keys)


async def commit_offsets(
    conn: psycopg.AsyncConnection,
    *,
    group: str,
    generation: int,
    offsets: Mapping[tuple[str, int], int],
) -> int:
    """Store next offsets inside the caller's transaction; raises StaleGeneration when fenced.

    The caller must roll back on StaleGeneration (the writer does: it raises out of its
    transaction block). Returns the number of partitions written.
    """
    if not offsets:
        return 0
    keys = sorted(offsets)
    params = {
        "group": group,
        "generation": generation,
        "topics": [t for t, _ in keys],
        "partitions": [p for _, p in keys],
        "offsets": [offsets[k] for k in keys],
    }
    cur = await conn.execute(_COMMIT, params)
    written = {(str(t), int(p)) for t, p in await cur.fetchall()}
    if len(written) != len(keys):
        fenced = sorted(set(keys) - written)
        msg = (
            f"group {group}: generation {generation} is stale for {fenced}; "
            "a newer consumer owns these partitions, the batch was not committed"
        )
        raise StaleGeneration(msg)
    return len(keys)
