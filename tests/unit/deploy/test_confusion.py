"""The confusion table from small frames: each reading matched to its fault and to its outcome."""

from __future__ import annotations

import json

import polars as pl
from polars.testing import assert_frame_equal

from deploy.local.confusion import confusion_of
from simulators.faults import FAULT_LOG_SCHEMA

T = "paris-energy-1"
E = "energy.active.import"


def _sent(rows: list[tuple[str, str, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(d, m, ts, T, msg) for d, m, ts, msg in rows],
        schema=["device_id", "metric", "ts_ms", "tenant", "msg_id"],
        orient="row",
    )


def _faults(rows: list[tuple[str, str, str, int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(k, T, d, m, ts, msg, detail) for k, d, m, ts, msg, detail in rows],
        schema=FAULT_LOG_SCHEMA,
        orient="row",
    )


def _processor_rejection(device: str, metric: str, ts: int, reason: str) -> dict[str, str]:
    body = {"device_id": device, "metric": metric, "kind": "counter", "ts_ms": ts, "value": 1.0}
    return {"reason": reason, "msg_id": "", "gateway_id": "", "payload": json.dumps(body)}


def test_each_reading_gets_its_fault_and_outcome() -> None:
    sent = _sent(
        [
            ("a", E, 0, "a:0"),  # clean, stored
            ("a", E, 900_000, "a:0"),  # spike, stored
            ("a", E, 1_800_000, "a:1"),  # broken message
            ("a", E, 2_700_000, "a:2"),  # duplicate message, stored once
            ("a", E, 3_600_000 + 120_000, "a:3"),  # skewed by +120 s, refused too_late
            ("a", E, 4_500_000, "a:4"),  # published on another pilot's prefix
            ("a", E, 5_400_000, "a:5"),  # clean but lost
            ("lw", "traffic.count.car", 60_000, "lw:0"),  # LoRaWAN: sent at the uplink's time
            ("lw", "traffic.count.bike", 0, "lw:0"),
        ]
    )
    faults = _faults(
        [
            ("spike", "a", E, 900_000, "a:0", "1 -> 11"),
            ("broken_json", "a", "", 1_800_000, "a:1", "broken_json"),
            ("duplicate", "a", "", 2_700_000, "a:2", "published twice"),
            ("clock_skew", "a", E, 3_600_000, "a:3", "ts shifted by 120 s"),
            ("wrong_tenant", "a", "", 4_500_000, "a:4", "published as ... on ..."),
            ("gap", "a", E, 6_300_000, "a:5", "dropped"),
        ]
    )
    topics = pl.DataFrame(
        {
            "msg_id": ["a:0", "a:1", "a:2", "a:2#dup", "a:3", "a:4", "a:5", "lw:0"],
            "topic_tenant": [T, T, T, T, T, "amsterdam-energy-1", T, T],
            "fmt": ["json"] * 7 + ["chirpstack"],
        }
    )
    stored = pl.DataFrame(
        {
            "device_id": ["a", "a", "a", "lw", "lw", "zz"],
            "metric": [E, E, E, "traffic.count.car", "traffic.count.bike", E],
            "ts_ms": [0, 900_000, 2_700_000, 60_000, 60_000, 0],
            "quality": [0, 0, 0, 0, 0, 0],
        }
    )
    rejections = pl.DataFrame(
        [
            {"reason": "bad_json", "msg_id": "a:1", "gateway_id": "gw", "payload": "{"},
            {"reason": "bad_json", "msg_id": "nobody:1", "gateway_id": "gw", "payload": "{"},
            _processor_rejection("a", E, 3_720_000, "too_late"),
        ]
    )
    c = confusion_of(sent, faults, topics, stored, rejections)
    got = c.outcomes.select("device_id", "logged_ts_ms", "kind", "outcome").sort(
        "device_id", "logged_ts_ms"
    )
    assert got.rows() == [
        ("a", 0, "none", "stored"),
        ("a", 900_000, "spike", "stored"),
        ("a", 1_800_000, "broken_json", "rejected:bad_json"),
        ("a", 2_700_000, "duplicate", "duplicate dropped"),
        ("a", 3_720_000, "clock_skew", "rejected:too_late"),
        ("a", 4_500_000, "wrong_tenant", "refused by broker"),
        ("a", 5_400_000, "none", "missing"),
        ("a", 6_300_000, "gap", "not sent"),
        ("lw", 0, "none", "stored"),  # found at the uplink's time, 60 s
        ("lw", 60_000, "none", "stored"),
    ]
    assert c.outcomes.height == 10
    expected = pl.DataFrame(
        {
            "kind": [
                "none",
                "gap",
                "spike",
                "clock_skew",
                "duplicate",
                "wrong_tenant",
                "broken_json",
            ],
            "stored": [3, 0, 1, 0, 0, 0, 0],
            "duplicate dropped": [0, 0, 0, 0, 1, 0, 0],
            "rejected:bad_json": [0, 0, 0, 0, 0, 0, 1],
            "rejected:too_late": [0, 0, 0, 1, 0, 0, 0],
            "refused by broker": [0, 0, 0, 0, 0, 1, 0],
            "not sent": [0, 1, 0, 0, 0, 0, 0],
            "missing": [1, 0, 0, 0, 0, 0, 0],
            "total": [4, 1, 1, 1, 1, 1, 1],
        }
    )
    assert_frame_equal(c.table, expected)
    assert c.unmatched_rejections["msg_id"].to_list() == ["nobody:1"]
    assert c.unexpected_stored["device_id"].to_list() == ["zz"]


def test_rendering_names_every_outcome() -> None:
    from rich.console import Console

    from deploy.local.confusion import render_confusion

    sent = _sent([("a", E, 0, "a:0")])
    empty = pl.DataFrame(
        schema={
            "reason": pl.String,
            "msg_id": pl.String,
            "gateway_id": pl.String,
            "payload": pl.String,
        }
    )
    stored = pl.DataFrame(
        schema={"device_id": pl.String, "metric": pl.String, "ts_ms": pl.Int64, "quality": pl.Int64}
    )
    topics = pl.DataFrame({"msg_id": ["a:0"], "topic_tenant": [T], "fmt": ["json"]})
    c = confusion_of(sent, _faults([]), topics, stored, empty)
    console = Console(record=True, width=120)
    console.print(render_confusion(c))
    text = console.export_text()
    assert "missing" in text
    assert c.table.row(0) == ("none", 1, 1)
