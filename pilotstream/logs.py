"""Structured logs: one line per event, ``key=value`` pairs, ids first. No print() in services."""

from __future__ import annotations

import logging
import sys
from typing import Any


class _KVFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "kv", {})
        parts = [
            self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"event={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in fields.items()]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class EventLogger:
    """``log.info("spool_drained", tenant=t, records=n)`` writes one key=value line."""

    def __init__(self, name: str):
        self._log = logging.getLogger(name)

    def _emit(self, level: int, event: str, exc: bool, kv: dict[str, Any]) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, event, extra={"kv": kv}, exc_info=exc)

    def debug(self, event: str, **kv: Any) -> None:
        self._emit(logging.DEBUG, event, False, kv)

    def info(self, event: str, **kv: Any) -> None:
        self._emit(logging.INFO, event, False, kv)

    def warning(self, event: str, **kv: Any) -> None:
        self._emit(logging.WARNING, event, False, kv)

    def error(self, event: str, *, exc: bool = False, **kv: Any) -> None:
        self._emit(logging.ERROR, event, exc, kv)


def get_logger(name: str) -> EventLogger:
    """A structured logger for a module."""
    return EventLogger(name)


def configure(level: str = "INFO") -> None:
    """Send key=value lines to stderr at ``level``; call once at start-up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KVFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
