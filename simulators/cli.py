"""Verbs ``pilotstream simulate`` and ``pilotstream replay``.

pilotstream simulate demo --to file --out out/sim/demo
pilotstream simulate demo --to mqtt --end-at now --out out/sim/live
pilotstream replay out/sim/demo --to mqtt --speed 3600
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilotstream.cli import EXIT_OK, EXIT_USAGE, add_settings_args, settings_from_args

if TYPE_CHECKING:
    import polars as pl

    from simulators.replay import Pace, ReplayState, Send
    from simulators.settings import SimulatorSettings

EXIT_INTERRUPTED = 130
MAX_READINGS = 8_000_000  # upper bound for in-memory runs: about 3 GB of RAM (7 days of city-scale)

OUTPUTS = ("mqtt", "kafka", "file")


def register(sub: argparse._SubParsersAction) -> list[str]:  # type: ignore[type-arg]
    """Add the ``simulate`` and ``replay`` verbs."""
    from simulators.settings import SimulatorSettings

    sim = sub.add_parser(
        "simulate",
        help="generate a scenario's device feeds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("scenario", help="scenario name (demo, city-scale) or a TOML file")
    sim.add_argument(
        "--to", choices=OUTPUTS, default="file", help="where the feed goes (default file)"
    )
    sim.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for messages.jsonl, readings.parquet, truth.*, faults.* "
        "(default out/sim/<scenario> for --to file; optional record for mqtt/kafka)",
    )
    sim.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    sim.add_argument(
        "--days", type=int, default=None, help="simulate only the scenario's first N days"
    )
    sim.add_argument(
        "--faults",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="inject the scenario's faults (default on)",
    )
    sim.add_argument(
        "--end-at",
        choices=("anchor", "now"),
        default="anchor",
        help="end the period at the scenario's anchor (deterministic) or now (live demo)",
    )
    _pace_args(sim, default_speed="max")
    add_settings_args(sim, SimulatorSettings)
    sim.set_defaults(func=_simulate)

    rep = sub.add_parser(
        "replay",
        help="replay a recorded feed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("file", type=Path, help="a simulate output folder or its messages.jsonl")
    rep.add_argument("--to", choices=("mqtt", "kafka"), default="mqtt", help="where to replay to")
    _pace_args(rep, default_speed="3600")
    add_settings_args(rep, SimulatorSettings)
    rep.set_defaults(func=_replay)
    return ["simulate", "replay"]


def _pace_args(p: argparse.ArgumentParser, *, default_speed: str) -> None:
    p.add_argument(
        "--speed",
        default=default_speed,
        help=f"virtual seconds per real second, or 'max' (default {default_speed})",
    )
    p.add_argument("--rate", type=float, default=None, help="at most this many messages per second")


def _simulate(args: argparse.Namespace) -> int:
    from pilotstream.logs import configure
    from simulators.publishers.files import write_run
    from simulators.replay import Pace
    from simulators.run import simulate
    from simulators.scenario import (
        end_at_now,
        first_days,
        load_scenario,
        readings_upper_bound,
        with_overrides,
    )
    from simulators.settings import SimulatorSettings

    settings = settings_from_args(SimulatorSettings, args)
    configure(settings.log_level)
    pace = Pace.parse(args.speed, args.rate)
    scn = with_overrides(load_scenario(args.scenario), seed=args.seed, faults=args.faults)
    if args.days is not None:
        scn = first_days(scn, args.days)
    if readings_upper_bound(scn) > MAX_READINGS:
        print(
            f"pilotstream simulate: {scn.name} has up to {readings_upper_bound(scn):,} readings, "
            f"more than {MAX_READINGS:,} fit in memory here; use --days N "
            "(the generation benchmark streams all of it: python -m bench simulate)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.end_at == "now":
        scn = end_at_now(scn)
    run = simulate(scn)
    out = args.out or (Path("out") / "sim" / scn.name if args.to == "file" else None)
    if out is not None:
        write_run(run, out)
        print(
            f"wrote {run.readings.height} readings, {run.messages.height} messages, "
            f"{run.faults.height} faults and the ground truth to {out}",
            file=sys.stderr,
        )
    if args.to == "mqtt":
        return _to_mqtt(run.messages, settings, pace)
    if args.to == "kafka":
        from simulators.publishers.kafka import reading_batches

        return _to_kafka(reading_batches(run.readings, run.messages), settings, pace)
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from pilotstream.logs import configure
    from simulators.replay import Pace, kafka_items, mqtt_items
    from simulators.settings import SimulatorSettings

    settings = settings_from_args(SimulatorSettings, args)
    configure(settings.log_level)
    pace = Pace.parse(args.speed, args.rate)
    if args.to == "mqtt":
        return _to_mqtt(mqtt_items(args.file), settings, pace)
    return _to_kafka(kafka_items(args.file), settings, pace)


def _to_mqtt(items: pl.DataFrame, settings: SimulatorSettings, pace: Pace) -> int:
    from simulators.publishers.mqtt import MqttPublisher

    pub = MqttPublisher(
        settings=settings,
        client_prefix=settings.mqtt_client_prefix,
        max_outstanding=settings.mqtt_max_outstanding,
    )

    async def send(row: dict[str, Any]) -> None:
        pub.publish(row["user"], row["topic"], row["payload"].encode(), row["msg_id"])

    try:
        code = _interruptible(lambda state: _drive(items, send, pace, "MQTT", state), items.height)
        pub.flush()  # also after Ctrl-C: what was handed to paho is delivered
    finally:
        pub.close()
    s = pub.stats
    print(
        f"MQTT: {s.sent} published, {s.acked} acknowledged, {s.refused} refused by the broker",
        file=sys.stderr,
    )
    return code


def _to_kafka(items: pl.DataFrame, settings: SimulatorSettings, pace: Pace) -> int:
    from simulators.publishers.kafka import KafkaPublisher

    async def main(state: ReplayState) -> int:
        async with KafkaPublisher(settings=settings, topic=settings.kafka_topic) as k:

            async def send(row: dict[str, Any]) -> None:
                await k.send(row["key"], row["value"])

            code = await _drive(items, send, pace, f"Kafka {settings.kafka_topic}", state)
        print(f"Kafka: {k.sent} reading batches acknowledged on {k.topic}", file=sys.stderr)
        return code

    return _interruptible(main, items.height)


async def _drive(
    items: pl.DataFrame, send: Send, pace: Pace, label: str, state: ReplayState
) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulators.replay import replay

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(label, total=state.total)

        def update(s: ReplayState) -> None:
            progress.update(task, completed=s.sent, description=f"{label} at {s.virtual_time()}")

        await replay(items, send, pace=pace, state=state, on_progress=update)
    return EXIT_OK


def _interruptible(make: Callable[[ReplayState], Coroutine[Any, Any, int]], total: int) -> int:
    """Run the replay; Ctrl-C stops it and says how far it got (exit 130)."""
    from simulators.replay import ReplayState

    state = ReplayState(total=total)
    try:
        return asyncio.run(make(state))
    except KeyboardInterrupt:
        print(f"stopped by Ctrl-C after {state.describe()}", file=sys.stderr)
        return EXIT_INTERRUPTED
