"""Settings of the MQTT gateway (section ``gateway``, env ``PILOTSTREAM_<FIELD>``)."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pilotstream.errors import SettingsError
from pilotstream.settings import BaseSettings, env_name, setting
from pilotstream.topics import READINGS, REJECTED, gateway_subscription

FSYNC_POLICIES = ("always", "interval", "never")
OVERFLOW_POLICIES = ("block", "drop")
COMPRESSIONS = ("none", "lz4", "gzip", "zstd", "snappy")
_DEFAULT_ID = "gw-" + re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())


@dataclass(frozen=True, kw_only=True)
class GatewaySettings(BaseSettings):
    """What one gateway process needs; unsafe values refuse to start."""

    section = "gateway"

    gateway_id: str = setting(_DEFAULT_ID, "id of this gateway, also its MQTT client id")
    mqtt_subscription: str = setting(gateway_subscription(), "MQTT topic filter (shared group)")
    mqtt_session_expiry_s: int = setting(7 * 86400, "MQTT 5 session expiry: broker keeps queue")
    mqtt_receive_maximum: int = setting(4000, "unacked QoS 1 messages the broker may send at once")
    mqtt_keepalive_s: int = setting(30, "MQTT keepalive")
    readings_topic: str = setting(READINGS, "Kafka topic for reading batches")
    rejected_topic: str = setting(REJECTED, "Kafka topic for dead letters")
    registry_file: Path | None = setting(  # noqa: RUF009 (settings fields are immutable)
        None, "registry TOML (default: the packaged one)"
    )
    batch_size: int = setting(1000, "MQTT messages decoded and produced together")
    batch_linger_ms: int = setting(5, "wait at most this long to fill a batch")
    max_inflight_batches: int = setting(8, "batches produced but not yet acked by Kafka")
    kafka_linger_ms: int = setting(5, "aiokafka linger_ms")
    kafka_max_batch_bytes: int = setting(1024 * 1024, "aiokafka max_batch_size in bytes")
    kafka_compression: str = setting("lz4", "none, lz4, gzip, zstd or snappy")
    produce_timeout_s: float = setting(10.0, "a batch not acked by Kafka in this time is spooled")
    max_payload_bytes: int = setting(64 * 1024, "larger MQTT payloads are refused (too_large)")
    max_depth: int = setting(16, "deeper JSON nesting is refused (too_deep)")
    future_skew_s: int = setting(300, "readings later than now + this are refused (future_ts)")
    horizon_s: int = setting(400 * 86400, "readings older than now - this are refused (too_old)")
    dead_letter_max_bytes: int = setting(4096, "original bytes kept in a dead letter")
    spool_dir: Path | None = setting(  # noqa: RUF009
        None, "spool folder (default: state_dir/spool/gateway_id)"
    )
    spool_max_bytes: int = setting(512 * 2**20, "spool bound; then the overflow policy applies")
    spool_segment_bytes: int = setting(16 * 2**20, "size of one spool segment file")
    spool_fsync: str = setting("always", "always (before MQTT ack), interval or never")
    spool_fsync_interval_ms: int = setting(200, "fsync period when spool_fsync=interval")
    spool_overflow: str = setting("block", "spool full: block (stop acking MQTT) or drop")
    metrics_port: int = setting(0, "Prometheus /metrics and /health on 127.0.0.1 (0 = off)")
    drain_timeout_s: float = setting(20.0, "on SIGTERM: flush, ack and exit within this")
    max_messages: int = setting(0, "exit after this many MQTT messages are acked (0 = run on)")

    def validate(self) -> None:
        """Refuse values that would lose data or cannot work."""
        super().validate()
        if not self.gateway_id or not self.gateway_id.replace("-", "").replace("_", "").isalnum():
            _refuse("gateway_id", "use letters, digits, '-' or '_'")
        if self.mqtt_session_expiry_s <= 0:
            _refuse("mqtt_session_expiry_s", "must be > 0, else the broker drops the queue")
        if not 0 < self.mqtt_receive_maximum <= 65535:
            _refuse("mqtt_receive_maximum", "must be 1..65535 (MQTT 5)")
        for name in ("batch_size", "max_inflight_batches", "max_payload_bytes", "max_depth"):
            if getattr(self, name) <= 0:
                _refuse(name, "must be > 0")
        if self.kafka_compression not in COMPRESSIONS:
            _refuse("kafka_compression", f"must be one of {', '.join(COMPRESSIONS)}")
        if self.produce_timeout_s <= 0:
            _refuse("produce_timeout_s", "must be > 0")
        if self.future_skew_s < 0 or self.horizon_s <= 0:
            _refuse("horizon_s", "future_skew_s must be >= 0 and horizon_s > 0")
        if self.spool_fsync not in FSYNC_POLICIES:
            _refuse("spool_fsync", f"must be one of {', '.join(FSYNC_POLICIES)}")
        if self.spool_overflow not in OVERFLOW_POLICIES:
            _refuse("spool_overflow", f"must be one of {', '.join(OVERFLOW_POLICIES)}")
        if self.spool_segment_bytes < 4096 or self.spool_max_bytes < self.spool_segment_bytes:
            _refuse("spool_max_bytes", "must be >= spool_segment_bytes >= 4096")
        if self.environment == "production" and self.spool_fsync == "never":
            _refuse("spool_fsync", "never loses acked messages on a power cut; not in production")
        if not 0 <= self.metrics_port < 65536:
            _refuse("metrics_port", "must be a TCP port or 0")

    @property
    def spool_path(self) -> Path:
        """Where this gateway's spool lives."""
        return self.spool_dir or self.state_dir / "spool" / self.gateway_id


def _refuse(name: str, why: str) -> NoReturn:
    msg = f"setting {name} ({env_name(name)}): {why}"
    raise SettingsError(msg)
