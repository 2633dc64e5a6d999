"""GatewaySettings refuse unsafe values, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.settings import GatewaySettings
from pilotstream.errors import SettingsError

SECRETS = {"mqtt_gateway_password": "s1", "mqtt_pilot_password": "s2", "pg_password": "s3"}


def test_defaults_are_safe() -> None:
    s = GatewaySettings.load(env={})
    assert s.mqtt_session_expiry_s > 0
    assert (s.future_skew_s, s.horizon_s) == (300, 400 * 86400)
    assert s.spool_path == Path(".stack") / "spool" / s.gateway_id


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"mqtt_session_expiry_s": 0}, "mqtt_session_expiry_s"),
        ({"spool_fsync": "sometimes"}, "spool_fsync"),
        ({"spool_overflow": "ignore"}, "spool_overflow"),
        ({"kafka_compression": "brotli"}, "kafka_compression"),
        ({"gateway_id": "gw one"}, "gateway_id"),
        ({"spool_max_bytes": 1024}, "spool_max_bytes"),
        ({"environment": "production", "spool_fsync": "never", **SECRETS}, "spool_fsync"),
        ({"mqtt_receive_maximum": 70000}, "mqtt_receive_maximum"),
    ],
)
def test_unsafe_values_refuse_to_start(overrides: dict[str, object], name: str) -> None:
    with pytest.raises(SettingsError, match=f"PILOTSTREAM_{name.upper()}"):
        GatewaySettings.load(env={}, overrides=overrides)


def test_env_variables_are_read() -> None:
    s = GatewaySettings.load(
        env={"PILOTSTREAM_FUTURE_SKEW_S": "60", "PILOTSTREAM_GATEWAY_ID": "gw-2"}
    )
    assert (s.future_skew_s, s.gateway_id) == (60, "gw-2")
