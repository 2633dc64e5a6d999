"""Frozen settings objects, built once at start-up from ``PILOTSTREAM_*`` variables and a TOML file.

Each service declares one frozen dataclass; every field names its environment variable and help text
in ``metadata`` so the CLI can show both in ``--help``. Nothing below start-up reads ``os.environ``.

Precedence, lowest first: field default, TOML file (``[common]`` plus the service's section),
environment, explicit overrides (CLI flags). Unsafe or contradictory values raise
:class:`~pilotstream.errors.SettingsError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pilotstream.errors import SettingsError

ENV_PREFIX = "PILOTSTREAM_"
CONFIG_ENV = "PILOTSTREAM_CONFIG"
DEV_SECRET_MARK = "-dev-"  # default secrets contain this; production refuses them

T = TypeVar("T", bound="BaseSettings")


def setting(default: Any, help: str, *, secret: bool = False) -> Any:
    """Declare a settings field with its help text; the env var is derived from the field name."""
    return field(default=default, metadata={"help": help, "secret": secret})


def env_name(field_name: str) -> str:
    """Environment variable of a field: ``PILOTSTREAM_`` + upper-case name."""
    return ENV_PREFIX + field_name.upper()


@dataclass(frozen=True, kw_only=True)
class BaseSettings:
    """Common connection settings shared by every service."""

    section: typing.ClassVar[str] = "common"

    environment: str = setting("dev", "dev or production; production refuses dev secrets")
    state_dir: Path = setting(Path(".stack"), "folder for all local state (git-ignored)")  # noqa: RUF009
    mqtt_host: str = setting("127.0.0.1", "MQTT broker host")
    mqtt_port: int = setting(18830, "MQTT broker port")
    mqtt_gateway_user: str = setting(
        "gateway", "MQTT user of gateways (may subscribe to all pilots)"
    )
    mqtt_gateway_password: str = setting("gateway-dev-pw", "MQTT password of gateways", secret=True)
    mqtt_pilot_password: str = setting(
        "pilot-dev-pw", "MQTT password of every pilot user in the local stack", secret=True
    )
    kafka_bootstrap: str = setting("127.0.0.1:19092", "Kafka bootstrap servers, comma-separated")
    pg_host: str = setting("127.0.0.1", "TimescaleDB host")
    pg_port: int = setting(15432, "TimescaleDB port")
    pg_database: str = setting("pilotstream", "database name")
    pg_user: str = setting("pilotstream", "database owner role used by services")
    pg_password: str = setting("pilotstream-dev-pw", "database password", secret=True)
    log_level: str = setting("INFO", "log level: DEBUG, INFO, WARNING, ERROR")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse unsafe or contradictory values; subclasses extend and call super()."""
        if self.environment not in ("dev", "production"):
            _refuse("environment", f"must be dev or production, not {self.environment!r}")
        for name in ("mqtt_port", "pg_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                _refuse(name, f"{port} is not a TCP port")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            _refuse("log_level", f"unknown level {self.log_level!r}")
        if self.environment == "production":
            for f in dataclasses.fields(self):
                value = getattr(self, f.name)
                if f.metadata.get("secret") and isinstance(value, str) and DEV_SECRET_MARK in value:
                    _refuse(f.name, "still has its development default; set a real secret")

    @property
    def pg_dsn(self) -> str:
        """libpq connection string (the password is not logged anywhere)."""
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={self.pg_database} "
            f"user={self.pg_user} password={self.pg_password}"
        )

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict for logs and ``--help``, secrets masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.metadata.get("secret") else value
        return out

    @classmethod
    def load(
        cls: type[T],
        *,
        env: Mapping[str, str] | None = None,
        file: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> T:
        """Build the settings: defaults < TOML file < environment < overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = file or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
        if path is not None:
            values.update(_read_toml(path, cls.section))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in fields:
            raw = env.get(env_name(name))
            if raw is not None:
                values[name] = raw
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        unknown = sorted(set(values) - set(fields))
        if unknown:
            _refuse(unknown[0], f"is not a setting of {cls.section}")
        hints = typing.get_type_hints(cls)
        coerced = {name: _coerce(name, value, hints[name]) for name, value in values.items()}
        return cls(**coerced)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(field, env var, default, help) for every setting, for ``--help`` and the README."""
        rows = []
        for f in dataclasses.fields(cls):
            default = "***" if f.metadata.get("secret") else f.default
            rows.append((f.name, env_name(f.name), str(default), str(f.metadata.get("help", ""))))
        return rows


def _refuse(name: str, why: str) -> typing.NoReturn:
    msg = f"setting {name} ({env_name(name)}): {why}"
    raise SettingsError(msg)


def _read_toml(path: Path, section: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        msg = f"settings file {path} does not exist ({CONFIG_ENV})"
        raise SettingsError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"settings file {path} is not valid TOML: {exc}"
        raise SettingsError(msg) from exc
    values: dict[str, Any] = dict(data.get("common", {}))
    if section != "common":
        values.update(data.get(section, {}))
    return values


def _coerce(name: str, value: Any, hint: Any) -> Any:
    target = hint
    if isinstance(hint, types.UnionType | typing._UnionGenericAlias):  # type: ignore[attr-defined]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value in ("", None):
            return None
        target = args[0]
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if target in (int, float, str, Path):
            if target is int and isinstance(value, float):
                raise ValueError(value)
            return target(value)
    except (TypeError, ValueError) as exc:
        msg = f"{value!r} is not a valid {getattr(target, '__name__', target)}"
        raise SettingsError(f"setting {name} ({env_name(name)}): {msg}") from exc
    return value
