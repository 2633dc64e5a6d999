"""Cross-check with the gateway's own decoders (ingest/decoders): clean messages decode to exactly
their readings; every malformed message is refused with the expected reason code."""

from __future__ import annotations

import math

import polars as pl
import pytest

from pilotstream.registry import load_registry
from pilotstream.vocab import METRICS
from simulators.run import Run

decoders = pytest.importorskip("ingest.decoders", reason="the gateway decoders are another issue")

EXPECTED = {
    "broken_json": {"bad_json"},
    "deep_nesting": {"too_deep"},
    "oversized": {"too_large"},
    "non_finite": {"non_finite"},
    "wrong_type": {"bad_schema"},
}

# a damaged value inside a record may be refused with the format's own record-level reason
FORMAT_REASONS = {"ocpp": {"bad_schema"}, "senml": {"bad_senml"}}


def _outcome(topic: str, payload: str, ctx: object) -> tuple[str, int, list[str], list[float]]:
    try:
        _, dec = decoders.decode_message(topic, payload.encode(), ctx)
    except decoders.RejectedMessageError as exc:
        return "rejected", 0, [exc.reason], []
    return "decoded", len(dec), [r.reason for r in dec.rejects], dec.value


def test_gateway_decodes_our_messages_and_refuses_the_malformed(faulty: Run) -> None:
    ctx = decoders.DecodeContext(received_at_ms=1_800_000_000_000, lorawan=load_registry().lorawan)
    rows = faulty.messages.select("fault", "topic", "payload", "n_readings").iter_rows()
    seen: dict[str, int] = {}
    for fault, topic, payload, n in rows:
        how, count, reasons, values = _outcome(topic, payload, ctx)
        if fault in EXPECTED:
            # refused whole, or the damaged record refused,
            # or (OCPP "1e400") a non-finite value left for validation to refuse
            expected = EXPECTED[fault] | FORMAT_REASONS.get(topic.split("/")[2], set())
            caught = set(reasons) & expected or (
                fault == "non_finite" and any(not math.isfinite(v) for v in values)
            )
            assert caught, (fault, topic, payload[:200], how, reasons)
            seen[fault] = seen.get(fault, 0) + 1
        elif fault == "wrong_tenant" and ("/tts/" in topic or "/chirpstack/" in topic):
            assert reasons == ["wrong_tenant"]  # the application belongs to another pilot
        else:
            assert (how, count, reasons) == ("decoded", n, []), (fault, topic, payload[:200])
    assert set(seen) == set(EXPECTED)


def test_gateway_sees_the_payload_device(faulty: Run) -> None:
    ctx = decoders.DecodeContext(received_at_ms=1_800_000_000_000, lorawan=load_registry().lorawan)
    clean = faulty.messages.filter(pl.col("fault") == "").group_by("fmt").first()
    for device, topic, payload in clean.select("device_id", "topic", "payload").iter_rows():
        _, dec = decoders.decode_message(topic, payload.encode(), ctx)
        assert dec.device_id == device


def test_gateway_validation_accepts_every_clean_reading_with_our_values(clean_run: Run) -> None:
    validate = pytest.importorskip("ingest.validate")
    registry = load_registry()
    ctx = decoders.DecodeContext(received_at_ms=0, lorawan=registry.lorawan)
    msgs = clean_run.messages
    decoded = [
        decoders.decode_message(t, p.encode(), ctx)[1]
        for t, p in msgs.select("topic", "payload").iter_rows()
    ]
    checked = validate.validate(
        decoded,
        tenants=msgs["tenant"].to_list(),
        received_at_ms=msgs["deliver_at_ms"].to_list(),
        known_tenants=set(registry.pilots),
        limits=validate.Limits(future_skew_ms=300_000, horizon_ms=400 * 86_400_000),
    )
    assert set(checked.reason) == {""}
    result = pl.DataFrame(
        {
            "device_id": checked.device_id[checked.msg],
            "metric": checked.metric,
            "ts_ms": checked.ts_ms,
            "value": checked.value,
            "unit": checked.unit,
        },
        schema_overrides={"device_id": pl.String, "metric": pl.String, "unit": pl.String},
    ).sort(["device_id", "metric", "ts_ms"])
    expected = (
        clean_run.clean.select("device_id", "metric", "ts_ms", "value")
        .with_columns(unit=pl.col("metric").replace_strict({m: s.unit for m, s in METRICS.items()}))
        .sort(["device_id", "metric", "ts_ms"])
    )
    assert result.select("device_id", "metric", "ts_ms", "unit").equals(
        expected.select("device_id", "metric", "ts_ms", "unit")
    )
    assert (result["value"] - expected["value"]).abs().max() < 1e-3
