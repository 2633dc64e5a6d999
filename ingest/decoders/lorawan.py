"""Shared by the LoRaWAN formats: a decoded object ``{metric: number}`` -> readings, and the
application -> tenant check against the registry."""

from __future__ import annotations

from typing import Any

from ingest.decoders.base import BAD_SCHEMA, WRONG_TENANT, DecodeContext, Decoded, is_number
from pilotstream.errors import DecodeError
from pilotstream.vocab import METRICS


def check_application(network: str, application: Any, tenant: str, ctx: DecodeContext) -> None:
    """Raise DecodeError(wrong_tenant) unless the registry gives ``application`` to ``tenant``."""
    owner = ctx.lorawan.get((network, application)) if isinstance(application, str) else None
    if owner != tenant:
        msg = f"{network} application {application!r} does not belong to tenant {tenant!r}"
        raise DecodeError(msg, reason=WRONG_TENANT)


def add_object(out: Decoded, obj: Any, ts_ms: float, seq: int) -> None:
    """Readings of a flat ``{metric: number}`` object, values in the metric's canonical unit."""
    if not isinstance(obj, dict):
        raise DecodeError("the decoded payload is not an object", reason=BAD_SCHEMA)
    for idx, (metric, value) in enumerate(obj.items()):
        if not is_number(value):
            out.reject(BAD_SCHEMA, f"{metric!r} is not a number", idx)
            continue
        spec = METRICS.get(metric)
        out.add(metric, ts_ms, float(value), spec.unit if spec else "", seq, idx)


def counter(value: Any, what: str) -> int:
    """A frame counter: absent means 0 (LoRaWAN servers omit zero fields)."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise DecodeError(f"{what} is not a 32-bit frame counter", reason=BAD_SCHEMA)
    return value
