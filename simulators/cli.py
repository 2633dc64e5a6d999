"""Verbs ``pilotstream simulate`` and ``pilotstream replay``.

pilotstream simulate demo --to file --out out/sim/demo
pilotstream simulate demo --to mqtt --end-at now --out out/sim/live
pilotstream replay out/sim/demo --to mqtt --speed 3600
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from pilotstream.cli import EXIT_OK, add_settings_args, settings_from_args

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
    from simulators.scenario import end_at_now, load_scenario, with_overrides
    from simulators.settings import SimulatorSettings

    settings = settings_from_args(SimulatorSettings, args)
    configure(settings.log_level)
    pace = Pace.parse(args.speed, args.rate)
    scn = with_overrides(load_scenario(args.scenario), seed=args.seed, faults=args.faults)
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


def _to_mqtt(items: Any, settings: Any, pace: Any) -> int:
    from simulators.publishers.mqtt import MqttPublisher

    pub = MqttPublisher(
        settings=settings,
        client_prefix=settings.mqtt_client_prefix,
        max_outstanding=settings.mqtt_max_outstanding,
    )

    async def send(row: dict[str, Any]) -> None:
        pub.publish(row["user"], row["topic"], row["payload"].encode(), row["msg_id"])

    try:
        code = _drive(items, send, pace, "MQTT")
        pub.flush()
    finally:
        pub.close()
    s = pub.stats
    print(
        f"MQTT: {s.sent} published, {s.acked} acknowledged, {s.refused} refused by the broker",
        file=sys.stderr,
    )
    return code


def _to_kafka(items: Any, settings: Any, pace: Any) -> int:
    from simulators.publishers.kafka import KafkaPublisher

    holder: dict[str, KafkaPublisher] = {}

    async def send(row: dict[str, Any]) -> None:
        await holder["k"].send(row["key"], row["value"])

    async def main() -> int:
        async with KafkaPublisher(settings=settings, topic=settings.kafka_topic) as k:
            holder["k"] = k
            return await _drive_async(items, send, pace, f"Kafka {settings.kafka_topic}")

    return _run_interruptible(main)


def _drive(items: Any, send: Any, pace: Any, label: str) -> int:
    return _run_interruptible(lambda: _drive_async(items, send, pace, label))


_STATE: dict[str, Any] = {}


async def _drive_async(items: Any, send: Any, pace: Any, label: str) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulators.replay import ReplayState, replay

    state = ReplayState(total=items.height)
    _STATE["state"] = state
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(f"{label}", total=state.total)

        def update(s: ReplayState) -> None:
            progress.update(
                task, completed=s.sent, description=f"{label} {s.describe().split(', ')[1]}"
            )

        await replay(items, send, pace=pace, state=state, on_progress=update)
    return EXIT_OK


def _run_interruptible(make: Any) -> int:
    try:
        return int(asyncio.run(make()))
    except KeyboardInterrupt:
        state = _STATE.get("state")
        how_far = state.describe() if state is not None else "nothing sent"
        print(f"stopped by Ctrl-C after {how_far}", file=sys.stderr)
        return 130
