"""The contract every local service implements, and the folder layout of the stack's state."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from deploy.local import procs
from deploy.local.settings import StackSettings
from pilotstream.errors import PilotstreamError

HERE = Path(__file__).parent


class ServiceError(PilotstreamError):
    """A service did not start or does not answer."""

    reason = "service_failed"
    retriable = True


@dataclass(frozen=True)
class Layout:
    """Folders under the state dir: one per service, plus caches and pid files."""

    root: Path

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def service(self, name: str) -> Path:
        return self.root / name


def render(template: str, out: Path, **values: object) -> None:
    """Fill a ``*.tmpl`` file of this folder with ``values`` into ``out``."""
    text = Template((HERE / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )
    out.write_text(text)


class Service(abc.ABC):
    """One local service: prepared once, started detached, checked at the protocol level."""

    name: str

    def __init__(self, settings: StackSettings, layout: Layout):
        self.settings = settings
        self.layout = layout
        self.dir = layout.service(self.name)
        self.pid_file = layout.run / f"{self.name}.pid"
        self.say: Callable[[str], None] = lambda _msg: None  # progress lines, set by the runner

    @property
    @abc.abstractmethod
    def log_path(self) -> Path:
        """The service's own log file."""

    @property
    @abc.abstractmethod
    def marker(self) -> str:
        """A string in the process's command line that proves the pid is ours."""

    @abc.abstractmethod
    def prepare(self) -> None:
        """Write config, create data folders, format storage: idempotent."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the process detached and record its pid."""

    @abc.abstractmethod
    def check(self) -> str:
        """Talk the service's protocol; return a short detail or raise ServiceError."""

    def ping(self) -> None:
        """Cheapest proof that the process accepts work (default: the full check)."""
        self.check()

    def after_start(self) -> str:
        """Create what the pipeline needs inside the running service; return what changed."""
        return ""

    def pid(self) -> int | None:
        return procs.read_pid(self.pid_file)

    def running(self) -> bool:
        return procs.alive(self.pid(), self.marker)

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None or not self.running():
            self.pid_file.unlink(missing_ok=True)
            return False
        procs.terminate(pid, self.marker)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wait_ready(self) -> str:
        """Poll ping() until it answers or the start timeout passes."""
        deadline = time.monotonic() + self.settings.start_timeout_s
        last: Exception | None = None
        gone_since: float | None = None
        while time.monotonic() < deadline:
            if not self.running():
                # a process that just started may not show its command line yet: allow 3 s
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > 3:
                    break
                time.sleep(0.2)
                continue
            gone_since = None
            try:
                self.ping()
                return "ready"
            except Exception as exc:
                last = exc
                time.sleep(0.5)
        why = (
            "exited"
            if not self.running()
            else f"did not answer in {self.settings.start_timeout_s:.0f} s"
        )
        msg = (
            f"{self.name} {why} ({last!r}).\n--- last lines of {self.log_path} ---\n"
            f"{procs.tail(self.log_path)}\n--- retry with: .venv/bin/pilotstream stack up"
        )
        raise ServiceError(msg)
