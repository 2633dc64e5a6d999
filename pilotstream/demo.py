"""``pilotstream demo``: bring the stack up and show data moving through each service.

This first slice proves the plumbing (one reading through MQTT, one batch through Kafka, one row into
a hypertable); the full pipeline demo replaces it as the gateway and processors land.
"""

from __future__ import annotations

import argparse
import time

from pilotstream.cli import EXIT_FAILED, EXIT_OK, add_settings_args, settings_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    """Add the ``demo`` verb."""
    from deploy.local.settings import StackSettings

    p = sub.add_parser(
        "demo",
        help="the whole pipeline on the demo scenario",
        description="Start the local stack and run the demo, reporting each step.",
    )
    add_settings_args(p, StackSettings)
    p.set_defaults(func=run)
    return ["demo"]


def _step(n: int, text: str) -> None:
    print(f"[demo {n}] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    from deploy.local import smoke, stack
    from deploy.local.settings import StackSettings
    from pilotstream import topics
    from pilotstream.contracts import Reading

    settings = settings_from_args(StackSettings, args)
    t0 = time.monotonic()
    stack.up(settings, lambda m: _step(1, m))
    ok = True
    tenant, device = "paris-energy-1", "demo-meter-1"
    payload = (
        b'{"readings":[{"metric":"energy.active.import","ts_ms":%d,"value":1.5,"unit":"kWh"}]}'
        % (smoke.now_ms())
    )
    res = smoke.mqtt_roundtrip(
        settings, publisher=tenant, topic=topics.mqtt_topic(tenant, "json", device), payload=payload
    )
    ok &= res.delivered == [payload]
    _step(
        2,
        f"MQTT: {tenant} published 1 reading at QoS 1; gateway user received {len(res.delivered)}",
    )
    reading = Reading(
        tenant=tenant, city="paris", device_id=device, metric="energy.active.import",
        ts_ms=smoke.now_ms(), value=1.5, unit="kWh", kind="counter", gateway_id="demo",
    )  # fmt: skip
    back = smoke.kafka_roundtrip(settings, topics.READINGS, reading)
    ok &= back == [reading]
    _step(
        3, f"Kafka: produced 1 reading batch to {topics.READINGS} (acks=all); read back {len(back)}"
    )
    now = time.time()
    buckets = smoke.hypertable_roundtrip(settings, "demo_smoke", [(now, 1.5)])
    ok &= len(buckets) >= 1
    _step(
        4,
        f"TimescaleDB: 1 row into hypertable demo_smoke; {len(buckets)} 15-min bucket(s) read back",
    )
    _step(5, f"{'all steps passed' if ok else 'A STEP FAILED'} in {time.monotonic() - t0:.1f} s")
    return EXIT_OK if ok else EXIT_FAILED
