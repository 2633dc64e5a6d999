"""Shared fixtures. Integration and e2e tests use the real local stack; a missing service is an
error (never a skip), so a run without the stack fails loudly instead of passing on nothing."""

from __future__ import annotations

import socket

import pytest

from pilotstream.settings import BaseSettings


@pytest.fixture(scope="session")
def settings() -> BaseSettings:
    """Connection settings of the local stack (env PILOTSTREAM_* may point elsewhere)."""
    return BaseSettings.load()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int) -> None:
    if not _reachable(host, port):
        pytest.fail(
            f"{name} is not reachable at {host}:{port}; start the stack with "
            "`.venv/bin/pilotstream stack up` (or `make test`)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def mqtt_service(settings: BaseSettings) -> BaseSettings:
    """Mosquitto must be up."""
    _require("Mosquitto", settings.mqtt_host, settings.mqtt_port)
    return settings


@pytest.fixture(scope="session")
def kafka_service(settings: BaseSettings) -> BaseSettings:
    """Kafka must be up."""
    host, port = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    _require("Kafka", host, int(port))
    return settings


@pytest.fixture(scope="session")
def pg_service(settings: BaseSettings) -> BaseSettings:
    """TimescaleDB must be up."""
    _require("TimescaleDB", settings.pg_host, settings.pg_port)
    return settings


@pytest.fixture(scope="session")
def stack(
    mqtt_service: BaseSettings, kafka_service: BaseSettings, pg_service: BaseSettings
) -> BaseSettings:
    """All three services must be up."""
    return mqtt_service
