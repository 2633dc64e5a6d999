"""Encoders of the simple formats, topic ``pilots/{tenant}/{fmt}/{device}``: canonical JSON, SenML
(RFC 8428 pack with base name, base time, base unit and relative times) and OCPP 1.6 MeterValues."""

from __future__ import annotations

import polars as pl

from simulators.formats._expr import cat, iso, json_number, quoted, sent_value

OCPP_MEASURANDS = {
    "energy.active.import": "Energy.Active.Import.Register",
    "power.active": "Power.Active.Import",
}

_KEYS = ["msg_id", "tenant", "device_id", "fmt"]


def _topic() -> pl.Expr:
    return cat("pilots/", pl.col("tenant"), "/", pl.col("fmt"), "/", pl.col("device_id"))


def _finish(grouped: pl.DataFrame) -> pl.DataFrame:
    return grouped.with_columns(user=pl.col("tenant"), topic=_topic())


def encode_json(df: pl.DataFrame) -> pl.DataFrame:
    """``{"device_id": ..., "readings": [{"metric", "ts", "value", "unit"}, ...]}``."""
    frag = cat(
        '{"metric":',
        quoted(pl.col("metric")),
        ',"ts":',
        quoted(iso()),
        ',"value":',
        json_number(sent_value()),
        ',"unit":',
        quoted(pl.col("unit")),
        "}",
    )
    grouped = (
        df.with_columns(frag=frag)
        .group_by(_KEYS, maintain_order=True)
        .agg(pl.col("frag").str.join(","), pl.col("ts_ms").max(), pl.len().alias("n_readings"))
        .with_columns(
            payload=cat(
                '{"device_id":', quoted(pl.col("device_id")), ',"readings":[', pl.col("frag"), "]}"
            )
        )
    )
    return _finish(grouped)


def encode_senml(df: pl.DataFrame) -> pl.DataFrame:
    """``[{"bn": "urn:dev:{device}:", "bt": s, "bu": unit, "n": metric, "v": x}, {"n", "t", "v"}...]``.

    The first record of a pack carries the base name, base time (whole seconds) and base unit; the
    others a time relative to it, and ``u`` only when their unit differs from the base unit.
    """
    first = pl.int_range(pl.len()).over("msg_id") == 0
    bt = (pl.col("ts_ms").min().over("msg_id") // 1000).cast(pl.Int64)
    bu = pl.col("unit").first().over("msg_id")
    rel = (pl.col("ts_ms") // 1000 - bt).cast(pl.String)
    value = json_number(sent_value())
    head = cat(
        '{"bn":"urn:dev:',
        pl.col("device_id"),
        ':","bt":',
        bt.cast(pl.String),
        ',"bu":',
        quoted(bu),
        ',"n":',
        quoted(pl.col("metric")),
        ',"v":',
        value,
        "}",
    )
    unit = (
        pl.when(pl.col("unit") != bu)
        .then(cat(',"u":', quoted(pl.col("unit"))))
        .otherwise(pl.lit(""))
    )
    rest = cat('{"n":', quoted(pl.col("metric")), unit, ',"t":', rel, ',"v":', value, "}")
    grouped = (
        df.with_columns(frag=pl.when(first).then(head).otherwise(rest))
        .group_by(_KEYS, maintain_order=True)
        .agg(pl.col("frag").str.join(","), pl.col("ts_ms").max(), pl.len().alias("n_readings"))
        .with_columns(payload=cat("[", pl.col("frag"), "]"))
    )
    return _finish(grouped)


def encode_ocpp(df: pl.DataFrame) -> pl.DataFrame:
    """OCPP 1.6 ``MeterValues.req``; values are strings (Wh, W), one ``meterValue`` per timestamp.

    Messages of odd slots are wrapped as an OCPP-J CALL ``[2, id, "MeterValues", {...}]`` so both
    accepted forms are exercised.
    """
    sampled = cat(
        '{"value":',
        quoted(sent_value().round(0).cast(pl.Int64).cast(pl.String)),
        ',"measurand":',
        quoted(pl.col("metric").replace_strict(OCPP_MEASURANDS, default="")),
        ',"unit":',
        quoted(pl.col("unit")),
        "}",
    )
    per_ts = (
        df.with_columns(frag=sampled)
        .group_by([*_KEYS, "slot", "ts_ms"], maintain_order=True)
        .agg(pl.col("frag").str.join(","), pl.len().alias("n"))
        .with_columns(
            mv=cat('{"timestamp":', quoted(iso()), ',"sampledValue":[', pl.col("frag"), "]}")
        )
    )
    req = cat('{"connectorId":1,"meterValue":[', pl.col("mv"), "]}")
    call = cat('[2,"', pl.col("msg_id"), '","MeterValues",', req, "]")
    grouped = (
        per_ts.group_by([*_KEYS, "slot"], maintain_order=True)
        .agg(
            pl.col("mv").str.join(","), pl.col("ts_ms").max(), pl.col("n").sum().alias("n_readings")
        )
        .with_columns(payload=pl.when(pl.col("slot") % 2 == 1).then(call).otherwise(req))
    )
    return _finish(grouped)
