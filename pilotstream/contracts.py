"""Messages every component exchanges: readings, reading batches, dead letters and window deltas.

A :class:`ReadingBatch` is what travels on ``pilotstream.readings.v1``: the readings of one device,
as columns, so processors turn a poll of many batches into numpy arrays without a per-reading loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from pilotstream.vocab import Kind

SCHEMA_VERSION = 1
NO_SEQ = -1  # value of ``seq`` when the source has no per-device sequence number


class Reading(msgspec.Struct, frozen=True, kw_only=True):
    """One canonical reading, row form (convenient in tests, simulators and decoders)."""

    tenant: str  # pilot id, derived from the MQTT topic, never from the payload
    city: str  # city id, e.g. "paris"
    device_id: str  # [A-Za-z0-9._:-], at most 64 characters
    metric: str  # dotted metric name from pilotstream.vocab.METRICS
    ts_ms: int  # event time, UTC, milliseconds since the Unix epoch
    value: float  # finite, in the metric's canonical unit
    unit: str  # canonical unit of the metric
    kind: Kind  # counter | gauge | delta
    seq: int = NO_SEQ  # per-device sequence number, NO_SEQ when the source has none
    received_at_ms: int = 0  # when the gateway received it, UTC ms
    gateway_id: str = ""  # which gateway forwarded it


class ReadingBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Readings of one device, as parallel columns. Encoded as JSON on the readings topic."""

    v: int = SCHEMA_VERSION  # encoding version
    tenant: str  # pilot id
    city: str  # city id
    device_id: str  # the Kafka key
    gateway_id: str  # forwarding gateway
    received_at_ms: int  # UTC ms when the gateway received the message
    metric: list[str]  # per reading: metric name
    ts_ms: list[int]  # per reading: event time, UTC ms
    value: list[float]  # per reading: value in canonical unit
    unit: list[str]  # per reading: canonical unit
    kind: list[str]  # per reading: counter | gauge | delta
    seq: list[int]  # per reading: sequence number or NO_SEQ

    def __len__(self) -> int:
        return len(self.ts_ms)

    def readings(self) -> list[Reading]:
        """The batch as row objects (tests and tools; hot paths stay columnar)."""
        return [
            Reading(
                tenant=self.tenant,
                city=self.city,
                device_id=self.device_id,
                metric=m,
                ts_ms=t,
                value=x,
                unit=u,
                kind=k,
                seq=s,
                received_at_ms=self.received_at_ms,
                gateway_id=self.gateway_id,
            )
            for m, t, x, u, k, s in zip(
                self.metric, self.ts_ms, self.value, self.unit, self.kind, self.seq, strict=True
            )
        ]


def batch_readings(readings: Iterable[Reading]) -> list[ReadingBatch]:
    """Group readings by (tenant, city, device, gateway) into batches, keeping arrival order."""
    groups: dict[tuple[str, str, str, str], list[Reading]] = {}
    for r in readings:
        groups.setdefault((r.tenant, r.city, r.device_id, r.gateway_id), []).append(r)
    return [_one_batch(rs) for rs in groups.values()]


def _one_batch(rs: Sequence[Reading]) -> ReadingBatch:
    first = rs[0]
    return ReadingBatch(
        tenant=first.tenant,
        city=first.city,
        device_id=first.device_id,
        gateway_id=first.gateway_id,
        received_at_ms=max(r.received_at_ms for r in rs),
        metric=[r.metric for r in rs],
        ts_ms=[r.ts_ms for r in rs],
        value=[r.value for r in rs],
        unit=[r.unit for r in rs],
        kind=[r.kind for r in rs],
        seq=[r.seq for r in rs],
    )


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter: input refused, with why, where from, and the original bytes (bounded)."""

    v: int = SCHEMA_VERSION  # encoding version
    reason: str  # reason code, e.g. bad_json, non_finite, future_ts, too_late
    detail: str  # human-readable explanation
    tenant: str  # pilot id from the topic ("" when the topic names none)
    topic: str  # MQTT topic (or Kafka topic for processor rejections)
    received_at_ms: int  # UTC ms
    gateway_id: str  # who refused it ("" for processors)
    payload: bytes  # original bytes, truncated to the configured bound (base64 in JSON)
    payload_size: int  # size of the original payload in bytes
    device_id: str = ""  # when known
    record_index: int = -1  # index of the refused record inside a pack, -1 for the whole message
    msg_id: str = ""  # the publisher's message id (MQTT 5 user property ``msg-id``), "" when none


class WindowDelta(msgspec.Struct, frozen=True, kw_only=True):
    """One window's result, as published on the deltas topic."""

    v: int = SCHEMA_VERSION  # encoding version
    tenant: str  # pilot id
    device_id: str  # device
    metric: str  # metric the window aggregates
    bucket_start_ms: int  # UTC ms, window start
    width_s: int  # window width in seconds (900 or 3600)
    actual: float  # measured consumption or count in the window, canonical unit
    baseline: float  # predicted counterfactual, canonical unit
    delta: float  # baseline - actual (positive = avoided)
    factor: float  # kgCO2e per canonical unit
    avoided_co2e_kg: float  # delta * factor, kg
    coverage: float  # share of expected readings present, 0..1
    baseline_model_id: str  # which baseline model predicted it
    factor_id: str  # which emission factor was applied
    revision: int  # 1 for the first result, +1 for each restatement
