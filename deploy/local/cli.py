"""``pilotstream stack up | down | status``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from pilotstream.cli import EXIT_OK, EXIT_SERVICE_DOWN, add_settings_args, settings_from_args

if TYPE_CHECKING:
    from deploy.local.stack import ServiceStatus


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    """Add the ``stack`` verb."""
    from deploy.local.settings import StackSettings

    p = sub.add_parser(
        "stack",
        help="start, stop and check the local services",
        description="The local service stack: Mosquitto, Apache Kafka (KRaft) and PostgreSQL with "
        "TimescaleDB, installed on first use, bound to 127.0.0.1, state under --state-dir.",
    )
    p.add_argument(
        "action",
        choices=("up", "down", "status"),
        help="up: install what is missing and start what is not running (idempotent); "
        "down: stop what the stack started; status: check each service, exit 3 if one is down",
    )
    add_settings_args(p, StackSettings)
    p.set_defaults(func=run)
    return ["stack"]


def _say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def run(args: argparse.Namespace) -> int:
    from deploy.local import stack
    from deploy.local.settings import StackSettings

    settings = settings_from_args(StackSettings, args)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "unable to connect" while starting
    if args.action == "up":
        stack.up(settings, _say)
        return _print_status(stack.status(settings))
    if args.action == "down":
        stack.down(settings, _say)
        return EXIT_OK
    return _print_status(stack.status(settings))


def _print_status(rows: list[ServiceStatus]) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pilotstream local stack")
    for col in ("service", "state", "pid", "detail"):
        table.add_column(col)
    for r in rows:
        state = "[green]up[/green]" if r.up else "[red]down[/red]"
        table.add_row(r.name, state, str(r.pid or "-"), r.detail.splitlines()[0][:120])
    Console(file=sys.stdout, width=160).print(table)
    return EXIT_OK if all(r.up for r in rows) else EXIT_SERVICE_DOWN
