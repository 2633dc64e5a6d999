"""``pilotstream process``: run one stream processor (several share the work by consumer group)."""

from __future__ import annotations

import argparse
from typing import Any

from pilotstream.cli import add_settings_args, settings_from_args


def register(sub: Any) -> list[str]:
    """Add the ``process`` verb."""
    from processors.settings import ProcessorSettings  # light: dataclasses only

    p = sub.add_parser(
        "process",
        help="run a stream processor",
        description="Consume reading batches from Kafka in a consumer group, run the kernels "
        "(dedup, cleaning, event-time windows, baselines, emission factors) and commit readings, "
        "window results, rejections and offsets to TimescaleDB in one transaction per batch; "
        "publish changed windows to the deltas topic. SIGTERM drains and exits.",
    )
    add_settings_args(p, ProcessorSettings)
    p.add_argument(
        "--exit-when-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit once the lag is zero and no record arrived for SECONDS, closing every open "
        "window first (tests, benchmarks, demo) [env PILOTSTREAM_EXIT_WHEN_IDLE_S]",
    )
    p.set_defaults(func=_run)
    return ["process"]


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from processors.allocator import tune_allocators

    tuned = tune_allocators()  # before polars is imported (by the runner)

    from pilotstream.logs import configure, get_logger
    from processors.runner import run_processor
    from processors.settings import ProcessorSettings

    if args.exit_when_idle is not None:
        args.setting_exit_when_idle_s = args.exit_when_idle
    settings = settings_from_args(ProcessorSettings, args)
    configure(settings.log_level)
    get_logger("processors.allocator").info("allocators", tuned="; ".join(tuned) or "none")
    return asyncio.run(run_processor(settings))
