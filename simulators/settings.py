"""Settings of the simulator verbs (``[simulators]`` section, ``PILOTSTREAM_*`` variables)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pilotstream.errors import SettingsError
from pilotstream.settings import BaseSettings, env_name, setting
from pilotstream.topics import READINGS


@dataclass(frozen=True, kw_only=True)
class SimulatorSettings(BaseSettings):
    """Where simulated feeds go."""

    section: ClassVar[str] = "simulators"

    kafka_topic: str = setting(READINGS, "Kafka topic for --to kafka (reading batches)")
    mqtt_max_outstanding: int = setting(500, "QoS 1 messages allowed in flight, unacknowledged")
    mqtt_client_prefix: str = setting("pilotstream-sim", "MQTT client id prefix (+ tenant)")

    def validate(self) -> None:
        """Refuse an empty topic or a non-positive in-flight window."""
        super().validate()
        if not self.kafka_topic.strip():
            _refuse("kafka_topic", "must not be empty")
        if self.mqtt_max_outstanding < 1:
            _refuse("mqtt_max_outstanding", f"must be >= 1, not {self.mqtt_max_outstanding}")


def _refuse(name: str, why: str) -> None:
    msg = f"setting {name} ({env_name(name)}): {why}"
    raise SettingsError(msg)
