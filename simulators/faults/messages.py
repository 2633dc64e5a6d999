"""Message faults: duplicates, out-of-order and late delivery, another pilot's topic, malformed bytes.

Every message gets a delivery time (event time + a short network latency); delivery faults move it,
payload faults rewrite the bytes, ``wrong_tenant`` moves the message under another pilot's prefix
while it is still published by its own pilot's MQTT user (the broker ACL refuses it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from simulators.faults.log import log_rows

DELIVERY = ("duplicate", "out_of_order", "late", "wrong_tenant")
MALFORMED = ("broken_json", "wrong_type", "non_finite", "oversized", "deep_nesting")
MESSAGE_KINDS = DELIVERY + MALFORMED
OVERSIZED_BYTES = 300 * 1024  # above the gateway's default 256 KiB limit
DEEP_LEVELS = 64  # above the gateway's default depth limit of 16
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400")

# first number of a reading, per format: (regex with the prefix as group 1, replacement prefix)
_FIRST_NUMBER = {
    "json": r'("value":)-?[0-9][0-9.eE+-]*',
    "senml": r'("v":)-?[0-9][0-9.eE+-]*',
    "ocpp": r'("value":)"[^"]*"',
    "tts": r'("decoded_payload":\{"[a-z.]+":)-?[0-9][0-9.eE+-]*',
    "chirpstack": r'("object":\{"[a-z.]+":)-?[0-9][0-9.eE+-]*',
}


def inject_message_faults(
    msgs: pl.DataFrame,
    rates: Mapping[str, float],
    rng: np.random.Generator,
    *,
    tenants: Sequence[str],
    span_ms: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Schedule delivery and apply message faults; returns (messages to send, fault log).

    Args:
        msgs: encoded messages (simulators.formats.MESSAGE_SCHEMA), in device / slot order.
        rates: fault kind -> probability per message.
        rng: seeded generator.
        tenants: every pilot id (``wrong_tenant`` publishes on the next one's prefix).
        span_ms: time one message covers; out-of-order messages arrive 1.5 spans late.

    The result gains ``deliver_at_ms`` and ``fault`` and is sorted by delivery time.
    """
    n = msgs.height
    widths = [rates.get(k, 0.0) for k in MESSAGE_KINDS]
    edges = np.cumsum(widths) if widths else np.zeros(1)
    if n and edges[-1] > 1.0:
        msg = "message fault rates add up to more than 1"
        raise ValueError(msg)
    pick = np.searchsorted(edges, rng.random(n), side="right")
    fault = np.array([*MESSAGE_KINDS, ""], dtype=object)[pick].tolist()
    latency = rng.integers(200, 3000, n)
    late = rng.integers(3600, 6 * 3600 + 1, n) * 1000
    variant = rng.integers(0, len(NON_FINITE), n)
    ring = sorted(tenants)
    other = {t: ring[(ring.index(t) + 1) % len(ring)] for t in ring}
    f = pl.col("fault")
    df = msgs.with_columns(
        fault=pl.Series(fault, dtype=pl.String),
        _late=pl.Series(late, dtype=pl.Int64),
        _nf=pl.Series(variant, dtype=pl.Int64).replace_strict(
            dict(enumerate(NON_FINITE)), return_dtype=pl.String
        ),
        deliver_at_ms=pl.col("ts_ms") + pl.Series(latency, dtype=pl.Int64),
    )
    df = df.with_columns(
        deliver_at_ms=pl.when(f == "late")
        .then(pl.col("deliver_at_ms") + pl.col("_late"))
        .when(f == "out_of_order")
        .then(pl.col("deliver_at_ms") + int(span_ms * 1.5))
        .otherwise(pl.col("deliver_at_ms")),
        topic=pl.when(f == "wrong_tenant")
        .then(
            pl.col("topic").str.replace(
                r"^pilots/[^/]+/",
                pl.concat_str(
                    [pl.lit("pilots/"), pl.col("tenant").replace_strict(other), pl.lit("/")]
                ),
            )
        )
        .otherwise(pl.col("topic")),
    )
    # rewrite only the malformed rows: the expressions would otherwise build 300 KiB for every row
    bad = f.is_in(MALFORMED)
    df = pl.concat([df.filter(~bad), df.filter(bad).with_columns(payload=_payload_faults())])
    dups = df.filter(f == "duplicate").with_columns(
        msg_id=pl.col("msg_id") + "#dup", deliver_at_ms=pl.col("deliver_at_ms") + 1000
    )
    detail = (
        pl.when(f == "late")
        .then(pl.format("delivered {} s late", pl.col("_late") // 1000))
        .when(f == "non_finite")
        .then(pl.format("first value replaced by {}", pl.col("_nf")))
        .when(f == "wrong_tenant")
        .then(pl.format("published as {} on {}", pl.col("user"), pl.col("topic")))
        .when(f == "duplicate")
        .then(pl.lit("published twice"))
        .otherwise(f)
    )
    log = log_rows(df.filter(f != "").with_columns(msg_id=pl.col("msg_id")), f, detail)
    out = pl.concat([df, dups]).drop(["_late", "_nf"])
    return out.sort(["deliver_at_ms", "msg_id"]), log


def _payload_faults() -> pl.Expr:
    f, p = pl.col("fault"), pl.col("payload")
    pad = '{"padding":"' + "x" * OVERSIZED_BYTES + '",'
    deep = '{"deep":' + "[" * DEEP_LEVELS + "]" * DEEP_LEVELS + ","
    expr: Any = pl.when(f == "broken_json").then(p.str.slice(0, p.str.len_bytes() // 2))
    expr = expr.when(f == "oversized").then(p.str.replace("{", pad, literal=True, n=1))
    expr = expr.when(f == "deep_nesting").then(p.str.replace("{", deep, literal=True, n=1))
    for fmt, pattern in _FIRST_NUMBER.items():
        is_fmt = pl.col("fmt") == fmt
        bad_type = "${1}true" if fmt == "ocpp" else '${1}"x"'
        expr = expr.when(is_fmt & (f == "wrong_type")).then(p.str.replace(pattern, bad_type, n=1))
        nf = pl.concat_str([pl.lit("${1}"), pl.col("_nf")])
        if fmt == "ocpp":
            nf = pl.concat_str([pl.lit('${1}"'), pl.col("_nf"), pl.lit('"')])
        expr = expr.when(is_fmt & (f == "non_finite")).then(p.str.replace(pattern, nf, n=1))
    result: pl.Expr = expr.otherwise(p)
    return result
