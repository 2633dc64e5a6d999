"""A batch of MQTT messages -> Kafka records: reading batches per device and dead letters.

Pure: no I/O. Every message ends either as readings or as dead letters with a reason (or both,
when some records of a pack are refused). Accepted readings of one (tenant, device) across the
whole batch are coalesced into one :class:`~pilotstream.contracts.ReadingBatch`, in arrival order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ingest.decoders import DecodeContext, Decoded, RejectedMessageError, decode_message
from ingest.mqtt_source import Message
from ingest.spool import Record
from ingest.validate import Checked, Limits, validate
from pilotstream.codec import encode
from pilotstream.contracts import ReadingBatch, Rejection
from pilotstream.registry import Registry


@dataclass(slots=True)
class Built:
    """The records of one batch and what to count."""

    records: list[Record] = field(default_factory=list)
    readings: int = 0  # accepted readings
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reason, tenant) -> n


@dataclass(frozen=True, slots=True)
class Builder:
    """Turns messages into records; built once from the settings and the registry."""

    registry: Registry
    gateway_id: str
    readings_topic: str
    rejected_topic: str
    limits: Limits
    max_payload_bytes: int
    max_depth: int
    dead_letter_max_bytes: int

    def build(self, msgs: Sequence[Message]) -> Built:
        """Decode, validate and encode ``msgs``; never raises on bad input."""
        out = Built()
        decoded: list[Decoded] = []
        tenants: list[str] = []
        received: list[int] = []
        kept: list[Message] = []
        for m in msgs:
            ctx = DecodeContext(
                received_at_ms=m.received_at_ms,
                lorawan=self.registry.lorawan,
                max_depth=self.max_depth,
                max_bytes=self.max_payload_bytes,
            )
            try:
                info, d = decode_message(m.topic, m.payload, ctx)
            except RejectedMessageError as exc:
                tenant = exc.topic_info.tenant if exc.topic_info else ""
                device = exc.topic_info.device_id if exc.topic_info else ""
                self._reject(out, m, exc.reason, str(exc), tenant, device, -1)
                continue
            for r in d.rejects:
                self._reject(out, m, r.reason, r.detail, info.tenant, r.device_id, r.record_index)
            decoded.append(d)
            tenants.append(info.tenant)
            received.append(m.received_at_ms)
            kept.append(m)
        checked = validate(decoded, tenants, received, self.registry.pilots.keys(), self.limits)
        self._refused_readings(out, checked, decoded, kept, tenants)
        self._reading_batches(out, checked, tenants, received)
        return out

    def _reject(
        self,
        out: Built,
        m: Message,
        reason: str,
        detail: str,
        tenant: str,
        device: str,
        index: int,
    ) -> None:
        letter = Rejection(
            reason=reason,
            detail=detail[:500],
            tenant=tenant,
            topic=m.topic,
            received_at_ms=m.received_at_ms,
            gateway_id=self.gateway_id,
            payload=m.payload[: self.dead_letter_max_bytes],
            payload_size=len(m.payload),
            device_id=device,
            record_index=index,
            msg_id=m.msg_id,
        )
        out.records.append(Record(self.rejected_topic, tenant.encode(), encode(letter)))
        out.rejected[(reason, tenant)] += 1

    def _refused_readings(
        self,
        out: Built,
        c: Checked,
        decoded: list[Decoded],
        msgs: list[Message],
        tenants: list[str],
    ) -> None:
        for i in np.flatnonzero(~c.ok):
            mi, pos = int(c.msg[i]), int(c.pos[i])
            d = decoded[mi]
            detail = f"{d.metric[pos]}={d.value[pos]!r} {d.unit[pos]} at ts_ms={d.ts_ms[pos]!r}"
            self._reject(
                out, msgs[mi], str(c.reason[i]), detail, tenants[mi], d.device_id,
                d.record_index[pos],
            )  # fmt: skip

    def _reading_batches(
        self, out: Built, c: Checked, tenants: list[str], received: list[int]
    ) -> None:
        ok = np.flatnonzero(c.ok)
        if len(ok) == 0:
            return
        # one group per (tenant, device), numbered in order of first appearance
        groups: dict[tuple[str, str], int] = {}
        msg_group = np.array(
            [groups.setdefault(key, len(groups)) for key in zip(tenants, c.device_id, strict=True)],
            dtype=np.int64,
        )
        group = msg_group[c.msg[ok]]
        order = np.argsort(group, kind="stable")  # arrival order inside a group
        rows = ok[order]
        bounds = np.flatnonzero(np.diff(group[order])) + 1
        recv = np.asarray(received, dtype=np.int64)
        for part in np.split(rows, bounds):
            mi = int(c.msg[part[0]])
            tenant, device = tenants[mi], str(c.device_id[mi])
            batch = ReadingBatch(
                tenant=tenant,
                city=self.registry.pilots[tenant].city,
                device_id=device,
                gateway_id=self.gateway_id,
                received_at_ms=int(recv[c.msg[part]].max()),
                metric=c.metric[part].tolist(),
                ts_ms=c.ts_ms[part].tolist(),
                value=c.value[part].tolist(),
                unit=c.unit[part].tolist(),
                kind=c.kind[part].tolist(),
                seq=c.seq[part].tolist(),
            )
            out.records.append(Record(self.readings_topic, device.encode(), encode(batch)))
        out.readings += len(ok)
