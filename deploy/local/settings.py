"""Settings of the local service stack (section ``stack``)."""

from __future__ import annotations

from dataclasses import dataclass

from pilotstream.settings import BaseSettings, _refuse, setting


@dataclass(frozen=True, kw_only=True)
class StackSettings(BaseSettings):
    """Where and how the local stack runs; every service binds to 127.0.0.1."""

    section = "stack"

    kafka_controller_port: int = setting(19093, "Kafka KRaft controller port")
    kafka_heap_mb: int = setting(768, "Kafka JVM heap (MiB)")
    pg_shared_buffers_mb: int = setting(512, "PostgreSQL shared_buffers (MiB)")
    install: bool = setting(True, "install missing Debian packages, Kafka jars and TimescaleDB")
    timescaledb_suite: str = setting("trixie", "Debian release whose timescaledb source is built")
    start_timeout_s: float = setting(90.0, "seconds to wait for a service to answer")

    def validate(self) -> None:
        super().validate()
        if self.mqtt_host != "127.0.0.1" or self.pg_host != "127.0.0.1":
            _refuse("mqtt_host", "the local stack binds to 127.0.0.1 only")
        if not self.kafka_bootstrap.startswith("127.0.0.1:"):
            _refuse("kafka_bootstrap", "the local stack binds to 127.0.0.1 only")
        if not 256 <= self.kafka_heap_mb <= 8192:
            _refuse("kafka_heap_mb", f"{self.kafka_heap_mb} MiB is outside 256..8192")
        ports = [self.mqtt_port, self.kafka_port, self.kafka_controller_port, self.pg_port]
        if len(set(ports)) != len(ports):
            _refuse("kafka_controller_port", f"ports collide: {ports}")

    @property
    def kafka_port(self) -> int:
        """Broker port, taken from kafka_bootstrap."""
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])
