"""The root error type and the few subclasses every package shares.

Errors carry what the caller decides on: ``retriable`` (try again later) and ``reason``
(a stable, lower-case code that also names dead-letter records).
"""

from __future__ import annotations


class PilotstreamError(Exception):
    """Root of every error raised on purpose by pilotstream."""

    retriable: bool = False
    reason: str = "error"

    def __init__(self, msg: str, *, reason: str | None = None, retriable: bool | None = None):
        super().__init__(msg)
        if reason is not None:
            self.reason = reason
        if retriable is not None:
            self.retriable = retriable


class SettingsError(PilotstreamError):
    """A setting is missing, malformed, unsafe or contradicts another; the service must not start."""

    reason = "bad_setting"


class DecodeError(PilotstreamError):
    """A payload could not be turned into readings; ``reason`` is the dead-letter reason code."""

    reason = "bad_payload"


class ServiceUnavailable(PilotstreamError):
    """A required service (MQTT broker, Kafka, database) cannot be reached."""

    reason = "service_unavailable"
    retriable = True


class NotBuiltYet(PilotstreamError):
    """A CLI verb that a later issue will build."""

    reason = "not_built"
