"""``pilotstream demo``: the whole pipeline on the demo scenario, with figures checked against truth.

Brings the local stack up, prepares a fresh run database and topics, starts a gateway and two
processors, publishes the ``demo`` scenario (five cities, faults on) through MQTT in every payload
format, waits until the pipeline has drained, then prints avoided kWh and tCO2e per city and pilot
beside the simulator's truth, data-quality counts, throughput and latency, and where to look next.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from pilotstream.cli import EXIT_FAILED, EXIT_OK, add_settings_args, settings_from_args

if TYPE_CHECKING:
    from deploy.local.demo import DemoResult

TOLERANCE_PCT = 3.0  # issue 8: avoided emissions per pilot within 3 % of the truth


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    """Add the ``demo`` verb."""
    from deploy.local.settings import StackSettings

    p = sub.add_parser(
        "demo",
        help="the whole pipeline on the demo scenario",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--processors", type=int, default=2, help="processor processes (default 2)")
    p.add_argument("--scenario", default="demo", help="simulator scenario (default demo)")
    p.add_argument(
        "--strict",
        action="store_true",
        help=f"exit 1 when a pilot's avoided tCO2e is more than {TOLERANCE_PCT:.0f} %% from the truth",
    )
    add_settings_args(p, StackSettings)
    p.set_defaults(func=run)
    return ["demo"]


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run(args: argparse.Namespace) -> int:
    from deploy.local import stack
    from deploy.local.demo import run_demo
    from deploy.local.settings import StackSettings
    from pilotstream.logs import configure

    settings = settings_from_args(StackSettings, args)
    configure("WARNING")  # the demo prints its own progress; services log to their own files
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries are reported as lag instead
    t0 = time.monotonic()
    stack.up(settings, _say)
    result = run_demo(settings, _say, scenario=args.scenario, processors=args.processors)
    ok = render(result, pg_port=settings.pg_port, dsn=result.run.dsn(settings))
    _say(f"done in {time.monotonic() - t0:.0f} s")
    return EXIT_FAILED if args.strict and not ok else EXIT_OK


def render(r: DemoResult, *, pg_port: int = 15432, dsn: str | None = None) -> bool:
    """Print the figures; True when every pilot is within the tolerance of the truth."""
    from rich.console import Console
    from rich.table import Table

    con = Console(file=sys.stdout, width=150)
    t = Table(title="Avoided emissions in the reporting period: pipeline vs simulator truth")
    for col in (
        "city",
        "pilot",
        "kWh pipeline",
        "kWh truth",
        "diff",
        "tCO2e pipeline",
        "tCO2e truth",
        "diff",
    ):
        t.add_column(col, justify="left" if col in ("city", "pilot") else "right")
    ok = True
    for row in r.pilots.iter_rows(named=True):
        within = abs(row["diff_kg_pct"] or 0.0) <= TOLERANCE_PCT
        ok &= within
        kwh_diff = "" if row["diff_kwh_pct"] is None else f"{row['diff_kwh_pct']:+.1f} %"
        t.add_row(
            row["city"], row["tenant"],
            _num(row["pipeline_kwh"]), _num(row["truth_kwh"]), kwh_diff,
            f"{row['pipeline_kg'] / 1000:.3f}", f"{row['truth_kg'] / 1000:.3f}",
            f"[{'green' if within else 'red'}]{row['diff_kg_pct']:+.1f} %[/]",
        )  # fmt: skip
    con.print(t)
    q = Table(title="Data quality")
    q.add_column("measure")
    q.add_column("count", justify="right")
    q.add_row("MQTT messages published", str(r.published))
    q.add_row("refused by the broker (publish outside own prefix)", str(r.refused_by_broker))
    q.add_row("readings sent", str(r.readings_sent))
    q.add_row("readings stored (once each)", str(r.quality["readings_stored"]))
    q.add_row(
        "windows restated: late data, or a baseline scored later (revision > 1)",
        str(r.quality["windows_restated"]),
    )
    for row in r.rejections.iter_rows(named=True):
        q.add_row(f"rejected: {row['reason']}", str(row["count"]))
    con.print(q)
    if dsn is not None:  # every reading sent: the fault injected in it and what became of it
        from deploy.local.confusion import fault_confusion, render_confusion

        title = "Readings sent, by injected fault (rows) and outcome (columns)"
        con.print(render_confusion(fault_confusion(r.out_dir, dsn), title=title))
    rate = r.readings_sent / max(r.publish_s + r.drain_s, 1e-9)
    lat = r.latency_ms
    con.print(
        f"Throughput: {r.readings_sent} readings in {r.publish_s:.1f} s publishing + {r.drain_s:.1f} s "
        f"draining = {rate:,.0f} readings/s end to end (MQTT publisher paced by QoS 1 acks).\n"
        f"Latency gateway receive -> row stored: p50 {_ms(lat['p50'])}, p95 {_ms(lat['p95'])}, "
        f"p99 {_ms(lat['p99'])}, max {_ms(lat['max'])}."
    )
    db = r.run.database
    con.print(
        "Where to look next:\n"
        f"  simulator output and truth: {r.out_dir}\n"
        f"  psql 'host=127.0.0.1 port={pg_port} dbname={db} user=pilotstream' -c "
        "'SELECT * FROM results_daily ORDER BY day LIMIT 20'\n"
        f"  PILOTSTREAM_PG_DATABASE={db} .venv/bin/pilotstream report --pilot paris-energy-1 "
        "--from 2026-02-16 --to 2026-03-02 --format html\n"
        "  python -m bench pipeline   (throughput and latency under load)"
    )
    verdict = "every pilot within" if ok else "SOME PILOTS OUTSIDE"
    con.print(f"[bold]{verdict} {TOLERANCE_PCT:.0f} % of the truth (tCO2e)[/bold]")
    return ok


def _num(x: Any) -> str:
    return f"{x:,.0f}" if x else "-"


def _ms(x: Any) -> str:
    return "-" if x is None else f"{float(x):.0f} ms"
