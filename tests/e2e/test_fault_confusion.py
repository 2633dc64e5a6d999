"""Every reading the simulator sent, one by one: stored once, or rejected with the reason matching
the fault the simulator injected (issue 8). The expected outcome of each reading is derived here
from the simulator's output alone (fault log, messages in delivery order, readings as sent) and
the processors' lateness rule; the pipeline's outcome comes from the run database
(:mod:`deploy.local.confusion`). The two tables must be equal, cell by cell."""

from __future__ import annotations

import dataclasses

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from deploy.local.confusion import Confusion, fault_confusion, render_confusion
from deploy.local.demo import DEMO_PROCESSOR_FLAGS, DemoResult
from pilotstream.settings import BaseSettings
from processors.kernels.windows import WIDTHS_S
from processors.settings import ProcessorSettings

pytestmark = pytest.mark.e2e


def _allowed_lateness_ms() -> int:
    """The lateness the demo's processors run with: their flag, else the setting's default."""
    flags = DEMO_PROCESSOR_FLAGS
    if "--allowed-lateness-s" in flags:
        return 1000 * int(flags[flags.index("--allowed-lateness-s") + 1])
    fields = dataclasses.fields(ProcessorSettings)
    return 1000 * int(next(f.default for f in fields if f.name == "allowed_lateness_s"))


ALLOWED_LATENESS_MS = _allowed_lateness_ms()
WIDEST_MS = 1000 * max(WIDTHS_S)
# whole message refused by the gateway, by fault kind
WHOLE = {"broken_json": "bad_json", "deep_nesting": "too_deep", "oversized": "too_large"}


@pytest.fixture(scope="module")
def confusion(live: DemoResult, stack: BaseSettings) -> Confusion:
    c = fault_confusion(live.out_dir, live.run.dsn(stack))
    from rich.console import Console

    Console(width=200).print(render_confusion(c))  # shown with -s, and in the report of a failure
    return c


def _first_refused(fault: pl.Expr, fmt: pl.Expr) -> pl.Expr:
    """Reason the gateway refuses the first reading of a message with (only) it, else null.

    ``wrong_type`` and, in OCPP's decimal strings, ``non_finite`` replace the message's first
    number: the decoders refuse that record alone and keep the rest of the message."""
    return (
        pl.when((fault == "wrong_type") & (fmt == "senml"))
        .then(pl.lit("bad_senml"))
        .when((fault == "wrong_type") | ((fault == "non_finite") & (fmt == "ocpp")))
        .then(pl.lit("bad_schema"))
    )


def _whole_refused(fault: pl.Expr, fmt: pl.Expr) -> pl.Expr:
    """Reason the gateway (or the broker) refuses every reading of a message, else null."""
    expr = pl.when((fault == "non_finite") & (fmt != "ocpp")).then(pl.lit("rejected:non_finite"))
    for kind, reason in WHOLE.items():
        expr = expr.when(fault == kind).then(pl.lit(f"rejected:{reason}"))
    return expr.when(fault == "wrong_tenant").then(pl.lit("refused by broker"))


def expected_outcomes(live: DemoResult, labelled: pl.DataFrame) -> pl.DataFrame:
    """The outcome each reading must have (keyed by device, metric and ``logged_ts_ms``), from the
    simulator's output: ``labelled`` (the confusion's outcomes) gives each reading its injected
    fault (``kind``) and the time it was sent at; the rest comes from the files.

    Lateness: a processor's watermark for a device is the largest event time it accepted from
    that device, in arrival order (the broker, the gateway and Kafka keep each device's order), so
    a reading is ``too_late`` when its widest window ended more than the allowed lateness before
    the latest reading of the device in an earlier delivered message.
    """
    out = live.out_dir
    messages = (
        pl.scan_ndjson(out / "messages.jsonl", schema={"msg_id": pl.String, "topic": pl.String})
        .with_row_index("order")
        .filter(~pl.col("msg_id").str.ends_with("#dup"))  # the copy repeats the same readings
        .select("order", "msg_id", fmt=pl.col("topic").str.split("/").list.get(2))
        .collect()
    )
    sent = pl.read_parquet(
        out / "readings.parquet", columns=["device_id", "metric", "ts_ms", "kind"]
    ).rename({"kind": "reading_kind", "ts_ms": "logged_ts_ms"})
    r = (
        labelled.filter(pl.col("kind") != "gap")
        .rename({"kind": "fault"})
        .join(sent, on=["device_id", "metric", "logged_ts_ms"], how="left")
        .join(messages, on="msg_id", how="left")
        .sort("order", "logged_ts_ms", "metric")
        .with_columns(first=pl.int_range(pl.len()).over("msg_id") == 0)
    )
    fault, fmt = pl.col("fault"), pl.col("fmt")
    r = r.with_columns(
        refused=pl.coalesce(
            _whole_refused(fault, fmt),
            pl.when(pl.col("first")).then(
                pl.concat_str([pl.lit("rejected:"), _first_refused(fault, fmt)])
            ),
        )
    )
    gauge = pl.col("reading_kind") == "gauge"
    bucket = ((pl.col("ts_ms") - pl.when(gauge).then(0).otherwise(1)) // WIDEST_MS) * WIDEST_MS
    newest = (
        r.filter(pl.col("refused").is_null())
        .group_by("device_id", "order")
        .agg(newest=pl.col("ts_ms").max())
        .sort("order")
        .with_columns(watermark=pl.col("newest").cum_max().shift(1).over("device_id"))
    )
    r = r.join(
        newest.select("device_id", "order", "watermark"), on=["device_id", "order"], how="left"
    )
    late = (bucket + WIDEST_MS + ALLOWED_LATENESS_MS) < pl.col("watermark")
    outcome = (
        pl.when(pl.col("refused").is_not_null())
        .then(pl.col("refused"))
        .when(late.fill_null(False))
        .then(pl.lit("rejected:too_late"))
        .when(fault == "duplicate")
        .then(pl.lit("duplicate dropped"))
        .otherwise(pl.lit("stored"))
    )
    expected = r.select("device_id", "metric", "logged_ts_ms", outcome=outcome)
    gaps = labelled.filter(pl.col("kind") == "gap").select(
        "device_id", "metric", "logged_ts_ms", outcome=pl.lit("not sent")
    )
    return pl.concat([expected, gaps])


def _tables(c: Confusion, compared: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Observed and expected outcomes of ``compared``'s readings, counted per fault kind in the
    same columns."""
    columns = sorted(set(compared["outcome"]) | set(compared["expected"].drop_nulls()))
    kinds = c.table.select("kind")

    def count(outcome: str) -> pl.DataFrame:
        counts = compared.group_by("kind", outcome).len()
        return kinds.with_columns(
            [
                pl.col("kind")
                .replace_strict(
                    dict(counts.filter(pl.col(outcome) == o).select("kind", "len").iter_rows()),
                    default=0,
                    return_dtype=pl.Int64,
                )
                .alias(o)
                for o in columns
            ]
        )

    return count("outcome"), count("expected")


def _assert_same(observed: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Equal tables, else a message listing the differing (kind, outcome) cells."""
    long = observed.unpivot(index="kind", variable_name="outcome", value_name="observed").join(
        expected.unpivot(index="kind", variable_name="outcome", value_name="expected"),
        on=["kind", "outcome"],
    )
    differ = long.filter(pl.col("observed") != pl.col("expected"))
    with pl.Config(tbl_rows=50, fmt_str_lengths=40):
        assert differ.is_empty(), f"readings per fault kind and outcome differ:\n{differ}"
    assert_frame_equal(observed, expected)


@pytest.fixture(scope="module")
def compared(live: DemoResult, confusion: Confusion) -> pl.DataFrame:
    """Each reading's observed ``outcome`` beside the ``expected`` one."""
    key = ["device_id", "metric", "logged_ts_ms"]
    expected = expected_outcomes(live, confusion.outcomes).rename({"outcome": "expected"})
    return confusion.outcomes.join(expected, on=key, how="left")


def _lateness(compared: pl.DataFrame) -> pl.Expr:
    """Readings whose outcome the lateness rule decides: late and out-of-order messages', and
    any reading refused (or expected to be refused) as too late."""
    late = "rejected:too_late"
    return (
        pl.col("kind").is_in(["late", "out_of_order"])
        | (pl.col("outcome") == late)
        | (pl.col("expected") == late)
    )


def test_every_reading_has_the_outcome_its_fault_calls_for(
    confusion: Confusion, compared: pl.DataFrame
) -> None:
    # readings the lateness rule decides are the next test's
    _assert_same(*_tables(confusion, compared.filter(~_lateness(compared))))
    assert confusion.table["missing"].sum() == 0
    assert confusion.table["total"].sum() == confusion.outcomes.height


def test_late_readings_are_stored_or_too_late_by_their_lateness(
    confusion: Confusion, compared: pl.DataFrame
) -> None:
    """A reading is ``too_late`` exactly when its widest window ended more than the allowed
    lateness before the newest reading of its device delivered before it (see
    :func:`expected_outcomes`), whatever the batches the gateway and the processors cut.

    Fails with processors whose watermark advances per poll only (a late reading polled together
    with the newer ones it is late to is accepted): then the outcome depends on timing."""
    concerned = compared.filter(_lateness(compared))
    assert concerned.filter(pl.col("kind") == "late").height > 50  # the demo injects them
    _assert_same(*_tables(confusion, concerned))


def test_each_fault_kind_was_injected_and_counted(live: DemoResult, confusion: Confusion) -> None:
    # every kind the demo injects is a row, and no reading is counted twice
    kinds = set(live.faults["kind"].to_list())
    assert kinds <= set(confusion.table["kind"].to_list())
    keys = confusion.outcomes.select("device_id", "metric", "logged_ts_ms")
    assert keys.is_duplicated().sum() == 0
    assert confusion.outcomes.filter(pl.col("kind") != "gap").height == live.readings_sent


def test_nothing_stored_or_rejected_that_was_not_sent(confusion: Confusion) -> None:
    assert confusion.unmatched_rejections.is_empty(), confusion.unmatched_rejections
    assert confusion.unexpected_stored.is_empty(), confusion.unexpected_stored


def test_broker_refusals_are_the_wrong_tenant_messages(
    live: DemoResult, confusion: Confusion
) -> None:
    refused = confusion.outcomes.filter(pl.col("outcome") == "refused by broker")
    assert refused["msg_id"].n_unique() == live.refused_by_broker
    wrong = live.faults.filter(pl.col("kind") == "wrong_tenant")["count"].sum()
    assert refused["msg_id"].n_unique() == wrong


def test_gateway_dead_letters_carry_the_message_id(live: DemoResult, stack: BaseSettings) -> None:
    with psycopg.connect(live.run.dsn(stack)) as conn:
        rows = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE msg_id = '') FROM rejections "
            "WHERE gateway_id <> ''"
        ).fetchone()
    assert rows is not None
    total, without = rows
    assert total > 50
    assert without == 0
