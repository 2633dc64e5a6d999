"""``up``, ``down`` and ``status`` of the local stack: Mosquitto, Kafka, TimescaleDB."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from deploy.local import install
from deploy.local.base import Layout, Service, ServiceError
from deploy.local.kafka import Kafka
from deploy.local.mosquitto import Mosquitto
from deploy.local.postgres import Postgres
from deploy.local.settings import StackSettings

Say = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``stack status``."""

    name: str
    up: bool
    pid: int | None
    detail: str


def services(settings: StackSettings) -> list[Service]:
    """The stack's services in start order."""
    layout = Layout(settings.state_dir.resolve())
    return [Mosquitto(settings, layout), Kafka(settings, layout), Postgres(settings, layout)]


def up(settings: StackSettings, say: Say) -> list[ServiceStatus]:
    """Install what is missing, start what is not running, check all; idempotent."""
    svcs = services(settings)
    layout = svcs[0].layout
    for folder in (layout.root, layout.run, layout.cache):
        folder.mkdir(parents=True, exist_ok=True)
    if settings.install:
        t0 = time.monotonic()
        install.ensure_apt_packages(say)
        say(f"Debian packages present ({time.monotonic() - t0:.1f} s)")
    rows = []
    for svc in svcs:
        svc.say = say
        t0 = time.monotonic()
        if svc.running():
            action = "already running"
        else:
            svc.stop()  # clear a stale pid file; ends nothing that is not ours
            svc.prepare()
            svc.start()
            action = "started"
        svc.wait_ready()
        changed = svc.after_start()
        detail = svc.check() + (f"; {changed}" if changed else "")
        say(f"{svc.name}: {action} in {time.monotonic() - t0:.1f} s: {detail}")
        rows.append(ServiceStatus(svc.name, True, svc.pid(), detail))
    return rows


def down(settings: StackSettings, say: Say) -> None:
    """Stop, in reverse order, only the processes this stack started (by their pid files)."""
    for svc in reversed(services(settings)):
        stopped = svc.stop()
        say(f"{svc.name}: {'stopped' if stopped else 'was not running'}")


def status(settings: StackSettings) -> list[ServiceStatus]:
    """Check each service at the protocol level."""
    rows = []
    for svc in services(settings):
        try:
            detail = svc.check()
            ok = True
        except ServiceError as exc:
            detail, ok = str(exc), False
        except Exception as exc:
            detail, ok = repr(exc), False
        if ok and not svc.running():
            detail += " (answering, but not started by this stack)"
        rows.append(ServiceStatus(svc.name, ok, svc.pid() if svc.running() else None, detail))
    return rows
