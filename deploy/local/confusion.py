"""Per-fault confusion table of a pipeline run: what became of every reading the simulator sent.

Inputs are a run's simulator output folder (``readings.parquet``: the readings as sent with their
``msg_id``; ``faults.parquet``: the fault log; ``messages.jsonl``: topics) and the run's database.
Each reading gets the fault the simulator injected into it, matched exactly:

- message faults by ``msg_id`` (they take precedence: a spike inside an unparseable message is
  refused for the message's sake);
- reading and series faults by (device, metric, event time; a ``clock_skew`` is logged at the
  true time and shifted here by its logged skew);
- ``none`` for clean readings; ``gap`` readings were never sent and appear once each.

A LoRaWAN uplink (``tts``, ``chirpstack``) carries one time for all its readings, the latest of
them (``readings.parquet`` keeps each reading's own): those readings are looked for at that time.

Each reading then gets one outcome, from the database:

- ``stored`` (``stored, flagged`` when its quality flags are not 0), ``duplicate dropped`` (a
  ``duplicate`` message's reading stored once although sent twice);
- ``rejected:<reason>``: a processor rejection of that very reading (device, metric, ts in its
  payload) or a gateway dead letter of its message (by ``msg_id``; several reasons joined by ``+``);
- ``refused by broker``: absent, no dead letter, and published on another pilot's prefix (the
  broker ACL drops those, the publisher counts the refusals);
- ``not sent`` for gaps; ``missing`` for everything else (the pipeline lost it).

Dead letters and stored readings that match no sent reading are returned beside the table.
:func:`fault_confusion` builds it all; :func:`render_confusion` draws the table with rich.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import psycopg

from simulators.formats import LORAWAN  # formats with one time per uplink

if TYPE_CHECKING:
    from rich.table import Table

KEY = ["device_id", "metric", "ts_ms"]
CLEAN = "none"
STORED, FLAGGED, DUPLICATE, BROKER, NOT_SENT, MISSING = (
    "stored",
    "stored, flagged",
    "duplicate dropped",
    "refused by broker",
    "not sent",
    "missing",
)
_FIRST = [STORED, FLAGGED, DUPLICATE]  # column order: stored ones, rejections, then these
_LAST = [BROKER, NOT_SENT, MISSING]
_PROCESSOR_PAYLOAD = pl.Struct({"device_id": pl.String, "metric": pl.String, "ts_ms": pl.Int64})


@dataclass(frozen=True)
class Confusion:
    """The confusion table of one run, with the per-reading outcomes it counts."""

    table: pl.DataFrame  # kind, one count column per outcome (``missing`` always present), total
    # one row per reading: device_id, metric, ts_ms (as sent), logged_ts_ms (as in
    # readings.parquet and the fault log), msg_id, kind (fault or "none"), outcome
    outcomes: pl.DataFrame
    unmatched_rejections: pl.DataFrame  # dead letters of no sent message or reading
    unexpected_stored: pl.DataFrame  # stored readings of the run's devices that were never sent


def fault_confusion(out_dir: Path, dsn: str) -> Confusion:
    """Match the simulator's output in ``out_dir`` with the run database at ``dsn``."""
    sent = pl.read_parquet(out_dir / "readings.parquet", columns=[*KEY, "tenant", "msg_id"])
    faults = pl.read_parquet(out_dir / "faults.parquet")
    parts = pl.col("topic").str.split("/")
    topics = (
        pl.scan_ndjson(out_dir / "messages.jsonl", schema={"msg_id": pl.String, "topic": pl.String})
        .select("msg_id", topic_tenant=parts.list.get(1), fmt=parts.list.get(2))
        .collect()
    )
    devices = sent["device_id"].unique().to_list()
    with psycopg.connect(dsn) as conn:
        stored = _query(
            conn,
            "SELECT device_id, metric, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, quality "
            "FROM readings WHERE device_id = ANY(%s)",
            (devices,),
        )
        rejections = _query(
            conn,
            "SELECT reason, msg_id, gateway_id, convert_from(payload, 'UTF8') AS payload "
            "FROM rejections WHERE gateway_id <> '' OR reason <> 'bad_batch'",
            (),
        )
    return confusion_of(sent, faults, topics, stored, rejections)


def confusion_of(
    sent: pl.DataFrame,
    faults: pl.DataFrame,
    topics: pl.DataFrame,
    stored: pl.DataFrame,
    rejections: pl.DataFrame,
) -> Confusion:
    """The table from frames (pure; :func:`fault_confusion` reads them).

    Args:
        sent: readings as sent: device_id, metric, ts_ms, tenant, msg_id.
        faults: the simulator's fault log.
        topics: msg_id, topic_tenant (the pilot named by the topic it was published on), fmt.
        stored: stored readings: device_id, metric, ts_ms, quality.
        rejections: reason, msg_id, gateway_id, payload (processor rejections: JSON of the reading).
    """
    message_faults = faults.filter(pl.col("metric") == "").select("msg_id", m_kind="kind")
    reading_faults = faults.filter(pl.col("metric") != "").select(
        "device_id",
        "metric",
        ts_ms=pl.col("ts_ms")
        + pl.when(pl.col("kind") == "clock_skew")
        .then(pl.col("detail").str.extract(r"shifted by (-?\d+) s").cast(pl.Int64) * 1000)
        .otherwise(0),
        r_kind="kind",
    )
    gaps = reading_faults.filter(pl.col("r_kind") == "gap")
    uplink = pl.col("fmt").is_in(LORAWAN)
    readings = (
        sent.join(message_faults, on="msg_id", how="left")
        .join(reading_faults.filter(pl.col("r_kind") != "gap"), on=KEY, how="left")
        .join(topics.unique("msg_id"), on="msg_id", how="left")
        .select(
            "device_id",
            "metric",
            ts_ms=pl.when(uplink).then(pl.col("ts_ms").max().over("msg_id")).otherwise("ts_ms"),
            logged_ts_ms="ts_ms",
            msg_id="msg_id",
            kind=pl.coalesce("m_kind", "r_kind", pl.lit(CLEAN)),
            foreign=pl.col("topic_tenant").fill_null(pl.col("tenant")) != pl.col("tenant"),
        )
    )
    gateway = rejections.filter(pl.col("gateway_id") != "")
    by_message = gateway.group_by("msg_id").agg(
        msg_reason=pl.col("reason").unique().sort().str.join("+")
    )
    processor = (
        rejections.filter(pl.col("gateway_id") == "")
        .with_columns(r=pl.col("payload").str.json_decode(_PROCESSOR_PAYLOAD))
        .unnest("r")
        .select(*KEY, "reason")
    )
    by_reading = processor.group_by(KEY).agg(
        read_reason=pl.col("reason").unique().sort().str.join("+")
    )
    found = stored.select(*KEY, "quality").unique(KEY)
    outcomes = (
        readings.join(found, on=KEY, how="left")
        .join(by_reading, on=KEY, how="left")
        .join(by_message, on="msg_id", how="left")
        .with_columns(outcome=_outcome())
        .select(*KEY, "logged_ts_ms", "msg_id", "kind", "outcome")
    )
    gap_rows = gaps.join(found, on=KEY, how="left").select(
        *KEY,
        logged_ts_ms="ts_ms",
        msg_id=pl.lit(""),
        kind=pl.lit("gap"),
        outcome=pl.when(pl.col("quality").is_null())
        .then(pl.lit(NOT_SENT))
        .otherwise(pl.lit(STORED)),
    )
    outcomes = pl.concat([outcomes, gap_rows])
    sent_ids = set(sent["msg_id"].unique().to_list())
    unmatched = pl.concat(
        [
            gateway.filter(~pl.col("msg_id").str.replace(r"#dup$", "").is_in(sent_ids)).select(
                "reason",
                "msg_id",
                device_id=pl.lit(""),
                metric=pl.lit(""),
                ts_ms=pl.lit(0, pl.Int64),
            ),
            processor.join(readings, on=KEY, how="anti").select(
                "reason", msg_id=pl.lit(""), device_id="device_id", metric="metric", ts_ms="ts_ms"
            ),
        ]
    )
    unexpected = stored.join(readings, on=KEY, how="anti").join(gaps, on=KEY, how="anti")
    return Confusion(_pivot(outcomes), outcomes, unmatched, unexpected.select(*KEY, "quality"))


def _outcome() -> pl.Expr:
    is_stored = pl.col("quality").is_not_null()
    stored = (
        pl.when(pl.col("kind") == "duplicate")
        .then(pl.lit(DUPLICATE))
        .when(pl.col("quality") != 0)
        .then(pl.lit(FLAGGED))
        .otherwise(pl.lit(STORED))
    )
    return (
        pl.when(is_stored & pl.col("read_reason").is_not_null())
        .then(pl.concat_str([stored, pl.lit(", copy rejected:"), pl.col("read_reason")]))
        .when(is_stored)
        .then(stored)
        .when(pl.col("read_reason").is_not_null())
        .then(pl.concat_str([pl.lit("rejected:"), pl.col("read_reason")]))
        .when(pl.col("msg_reason").is_not_null())
        .then(pl.concat_str([pl.lit("rejected:"), pl.col("msg_reason")]))
        .when(pl.col("foreign"))
        .then(pl.lit(BROKER))
        .otherwise(pl.lit(MISSING))
    )


def _pivot(outcomes: pl.DataFrame) -> pl.DataFrame:
    from simulators.faults import FAULT_KINDS

    seen = set(outcomes["outcome"].unique().to_list())
    middle = sorted(seen - set(_FIRST) - set(_LAST))
    columns = [c for c in _FIRST if c in seen] + middle + [c for c in _LAST if c in seen]
    if MISSING not in columns:
        columns.append(MISSING)
    kinds = [CLEAN, *FAULT_KINDS]
    present = set(outcomes["kind"].unique().to_list())
    order = [k for k in kinds if k in present] + sorted(present - set(kinds))
    counts = outcomes.group_by("kind", "outcome").len()
    table = pl.DataFrame({"kind": order}).with_columns(
        [
            pl.col("kind")
            .replace_strict(
                dict(counts.filter(pl.col("outcome") == c).select("kind", "len").iter_rows()),
                default=0,
                return_dtype=pl.Int64,
            )
            .alias(c)
            for c in columns
        ]
    )
    return table.with_columns(total=pl.sum_horizontal(columns))


def render_confusion(c: Confusion, *, title: str | None = None) -> Table:
    """The table for ``rich`` (``Console().print(render_confusion(c))``): zero cells dimmed,
    ``missing`` in red when not zero."""
    from rich import box
    from rich.table import Table

    t = Table(
        title=title or "What became of every reading the simulator sent, by injected fault",
        box=box.SIMPLE_HEAD,  # no vertical rules: the 15 columns of a demo run fit 150 characters
    )
    for col in c.table.columns:  # headers word by word on separate lines keep columns narrow
        head = col if col == "kind" else re.sub(r"[: _]", "\n", col)
        values = c.table[col].cast(pl.String).to_list()
        width = max(len(line) for line in [*head.split("\n"), *values])
        t.add_column(head, justify="left" if col == "kind" else "right", min_width=width)
    for row in c.table.iter_rows(named=True):
        cells = [row["kind"]]
        for col in c.table.columns[1:]:
            n = row[col]
            style = "red" if col == MISSING and n else "dim" if n == 0 else ""
            cells.append(f"[{style}]{n}[/]" if style else str(n))
        t.add_row(*cells)
    extra = c.unmatched_rejections.height + c.unexpected_stored.height
    if extra:
        t.caption = (
            f"{c.unmatched_rejections.height} dead letters matched no sent reading; "
            f"{c.unexpected_stored.height} stored readings were never sent"
        )
    return t


def _query(
    conn: psycopg.Connection[tuple[object, ...]], query: str, params: tuple[object, ...]
) -> pl.DataFrame:
    cur = conn.execute(query, params or None)
    names = [d.name for d in cur.description or []]
    return pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)
