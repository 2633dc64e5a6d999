"""Settings come from defaults, a TOML file and the environment, and refuse unsafe values."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local.settings import StackSettings
from pilotstream.errors import SettingsError
from pilotstream.settings import BaseSettings


def test_defaults_then_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[common]\nmqtt_port = 1884\nlog_level = "DEBUG"\n[stack]\nkafka_heap_mb = 1024\n'
    )
    env = {"PILOTSTREAM_MQTT_PORT": "1885"}
    s = StackSettings.load(env=env, file=cfg, overrides={"pg_port": "5433"})
    assert s.mqtt_port == 1885  # env beats file
    assert s.log_level == "DEBUG"  # file beats default
    assert s.kafka_heap_mb == 1024  # service section
    assert s.pg_port == 5433  # override beats all
    assert BaseSettings.load(env={}).mqtt_port == 18830


def test_config_file_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text("[common]\npg_port = 6000\n")
    assert BaseSettings.load(env={"PILOTSTREAM_CONFIG": str(cfg)}).pg_port == 6000


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PILOTSTREAM_MQTT_PORT": "70000"}, "mqtt_port"),
        ({"PILOTSTREAM_MQTT_PORT": "abc"}, "PILOTSTREAM_MQTT_PORT"),
        ({"PILOTSTREAM_ENVIRONMENT": "staging"}, "environment"),
        ({"PILOTSTREAM_LOG_LEVEL": "LOUD"}, "log_level"),
        ({"PILOTSTREAM_ENVIRONMENT": "production"}, "still has its development default"),
    ],
)
def test_unsafe_values_are_refused_naming_the_setting(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        BaseSettings.load(env=env)


def test_production_accepts_real_secrets() -> None:
    env = {
        "PILOTSTREAM_ENVIRONMENT": "production",
        "PILOTSTREAM_PG_PASSWORD": "s3cret",
        "PILOTSTREAM_MQTT_GATEWAY_PASSWORD": "s3cret",
        "PILOTSTREAM_MQTT_PILOT_PASSWORD": "s3cret",
    }
    s = BaseSettings.load(env=env)
    assert s.redacted()["pg_password"] == "***"
    assert "s3cret" not in repr(s.redacted())


def test_stack_refuses_non_loopback_and_port_clash() -> None:
    with pytest.raises(SettingsError, match="mqtt_host"):
        StackSettings.load(env={"PILOTSTREAM_MQTT_HOST": "0.0.0.0"})
    with pytest.raises(SettingsError, match="ports collide"):
        StackSettings.load(env={"PILOTSTREAM_KAFKA_CONTROLLER_PORT": "18830"})


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text("[common]\nmqtt_prot = 1\n")
    with pytest.raises(SettingsError, match="mqtt_prot"):
        BaseSettings.load(env={}, file=cfg)


def test_bad_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[common\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        BaseSettings.load(env={}, file=bad)
    with pytest.raises(SettingsError, match="does not exist"):
        BaseSettings.load(env={}, file=tmp_path / "nope.toml")
