"""The gateway ``Builder`` the ingest unit tests share (test registry, tight limits)."""

from __future__ import annotations

from ingest.batch import Builder
from ingest.validate import Limits
from pilotstream.registry import load_registry


def make_builder() -> Builder:
    """A Builder over the shipped registry: readings to topic ``r``, dead letters to ``x``."""
    return Builder(
        registry=load_registry(),
        gateway_id="gw-test",
        readings_topic="r",
        rejected_topic="x",
        limits=Limits(future_skew_ms=300_000, horizon_ms=400 * 86_400_000),
        max_payload_bytes=8192,
        max_depth=8,
        dead_letter_max_bytes=256,
    )
