"""The ``pilotstream`` command: one verb per job, each registered by the package that owns it.

A package registers its verbs in its own ``cli`` module (``register(subparsers)``), imported only
when the command starts, so ``--help`` stays fast. A verb whose package is not built yet says so and
exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pilotstream.errors import PilotstreamError, SettingsError
from pilotstream.settings import BaseSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # also: not built yet
EXIT_SERVICE_DOWN = 3

# verb -> (module that registers it, one-line summary shown while it is not built)
VERBS: dict[str, tuple[str, str]] = {
    "stack": ("deploy.local.cli", "start, stop and check the local services"),
    "db": ("storage.cli", "database migrations and maintenance"),
    "simulate": ("simulators.cli", "generate a scenario's device feeds"),
    "replay": ("simulators.cli", "replay a recorded feed"),
    "gateway": ("ingest.cli", "run the MQTT -> Kafka gateway"),
    "process": ("processors.cli", "run a stream processor"),
    "baseline": ("processors.mv_cli", "fit baselines for a pilot"),
    "report": ("processors.mv_cli", "measurement-and-verification report"),
    "factors": ("processors.mv_cli", "load and list emission factors"),
    "demo": ("pilotstream.demo", "the whole pipeline on the demo scenario"),
}


def add_settings_args(parser: argparse.ArgumentParser, cls: type[BaseSettings]) -> None:
    """One ``--flag`` per setting; help shows its environment variable and default."""
    group = parser.add_argument_group(
        f"settings ({cls.section}); also read from PILOTSTREAM_CONFIG"
    )
    for name, env, default, help_text in cls.describe():
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"setting_{name}",
            default=None,
            metavar=name.split("_")[-1].upper(),
            help=f"{help_text} [env {env}, default {default}]",
        )
    parser.add_argument(
        "--config", default=None, help="TOML settings file [env PILOTSTREAM_CONFIG]"
    )


def settings_from_args(cls: type[Any], args: argparse.Namespace) -> Any:
    """Build a service's settings from env, ``--config`` and the flags added by add_settings_args."""
    from pathlib import Path

    overrides = {
        k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")
    }
    file = Path(args.config) if getattr(args, "config", None) else None
    return cls.load(file=file, overrides=overrides)


def _not_built(verb: str, summary: str) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        print(
            f"pilotstream {verb}: not built yet ({summary}); see the open issues.", file=sys.stderr
        )
        return EXIT_USAGE

    return run


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every package's verbs (placeholders for packages not built yet)."""
    parser = argparse.ArgumentParser(
        prog="pilotstream",
        description="Streaming telemetry for city climate pilots: "
        "MQTT -> Kafka -> processors -> TimescaleDB.",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage or not built, 3 a service is down.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    registered: set[str] = set()
    for module in dict.fromkeys(m for m, _ in VERBS.values()):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            continue
        register = getattr(mod, "register", None)
        if register is not None:
            registered |= set(register(sub))
    for verb, (_, summary) in VERBS.items():
        if verb not in registered:
            p = sub.add_parser(verb, help=f"{summary} (not built yet)")
            p.set_defaults(func=_not_built(verb, summary))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pilotstream`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args))
    except SettingsError as exc:
        print(f"pilotstream: refusing to start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PilotstreamError as exc:
        print(f"pilotstream {args.verb}: {exc}", file=sys.stderr)
        return EXIT_SERVICE_DOWN if exc.retriable else EXIT_FAILED
    except KeyboardInterrupt:
        print(f"pilotstream {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
