"""``pilotstream baseline|report|factors``: measurement and verification from the command line.

- ``baseline fit --pilot ID [--method auto|daily|hourly|tow]``: fit each device's baseline from its
  hourly results before the pilot's start (or ``--baseline-end``), store the models, print the fit
  metrics table;
- ``report --pilot ID | --city ID --from DATE --to DATE [--format md|html|pdf]``: the M&V report;
- ``factors load FILE [--dry-run]``: validate a factor CSV and load it; ``factors list``.

Heavy imports (polars, psycopg, matplotlib) happen inside the handlers so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

from pilotstream.cli import EXIT_FAILED, EXIT_OK, add_settings_args, settings_from_args
from pilotstream.errors import PilotstreamError, ServiceUnavailable
from pilotstream.settings import BaseSettings, setting

DAY_MS = 86_400_000


@dataclass(frozen=True, kw_only=True)
class MvSettings(BaseSettings):
    """Settings of the measurement-and-verification commands."""

    section = "mv"

    report_dir: Path = setting(Path("reports"), "folder the reports are written to")  # noqa: RUF009 (immutable)
    factor_series: str = setting("", "extra time-varying factor CSV files, comma-separated")


def register(subparsers: Any) -> list[str]:
    """Add the ``baseline``, ``report`` and ``factors`` verbs."""
    base = subparsers.add_parser("baseline", help="fit baselines for a pilot")
    base_sub = base.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = base_sub.add_parser("fit", help="fit each device's baseline and store it")
    fit.add_argument("--pilot", required=True, help="pilot (tenant) id")
    fit.add_argument(
        "--method",
        choices=("auto", "daily", "hourly", "tow"),
        default=None,
        help="model (default: auto for energy pilots, tow for mobility pilots)",
    )
    fit.add_argument(
        "--baseline-end",
        type=date.fromisoformat,
        default=None,
        help="end of the baseline period, YYYY-MM-DD (default: the pilot's start intervention)",
    )
    fit.add_argument(
        "--days",
        type=int,
        default=None,
        help="baseline length in days (default 365 energy, 56 mobility)",
    )
    fit.add_argument("--dry-run", action="store_true", help="fit and print, do not store")
    add_settings_args(fit, MvSettings)
    fit.set_defaults(func=_baseline_fit)

    rep = subparsers.add_parser("report", help="measurement-and-verification report")
    who = rep.add_mutually_exclusive_group(required=True)
    who.add_argument("--pilot", help="pilot (tenant) id")
    who.add_argument("--city", help="city id: every pilot of the city")
    rep.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        required=True,
        help="reporting period start, YYYY-MM-DD (UTC midnight)",
    )
    rep.add_argument(
        "--to",
        dest="end",
        type=date.fromisoformat,
        required=True,
        help="reporting period end, exclusive, YYYY-MM-DD",
    )
    rep.add_argument(
        "--format",
        choices=("md", "html", "pdf"),
        default="html",
        help="output format (md writes the charts as PNG files beside)",
    )
    rep.add_argument("--out", type=Path, default=None, help="output file (default: report_dir)")
    add_settings_args(rep, MvSettings)
    rep.set_defaults(func=_report)

    fac = subparsers.add_parser("factors", help="load and list emission factors")
    fac_sub = fac.add_subparsers(dest="action", metavar="ACTION", required=True)
    load = fac_sub.add_parser("load", help="validate a factor CSV and load it into the database")
    load.add_argument(
        "file",
        type=Path,
        help="CSV: factor_id,scope,unit,value,basis,source,year,valid_from,valid_to",
    )
    load.add_argument("--dry-run", action="store_true", help="validate only")
    add_settings_args(load, MvSettings)
    load.set_defaults(func=_factors_load)
    lst = fac_sub.add_parser("list", help="list the packaged factors (and series files)")
    lst.add_argument("--scope", default="", help="only scopes starting with this, e.g. grid:")
    add_settings_args(lst, MvSettings)
    lst.set_defaults(func=_factors_list)
    return ["baseline", "report", "factors"]


def _connect(settings: MvSettings) -> Any:
    import psycopg

    try:
        return psycopg.connect(settings.pg_dsn, connect_timeout=5)
    except psycopg.OperationalError as exc:
        msg = f"TimescaleDB at {settings.pg_host}:{settings.pg_port} is unreachable"
        raise ServiceUnavailable(msg) from exc


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _baseline_fit(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from pilotstream.registry import load_registry
    from processors.baselines import fit_devices
    from processors.baselines.fit import Method
    from processors.report import store
    from processors.report.tables import fit_table

    settings = settings_from_args(MvSettings, args)
    registry = load_registry()
    pilot = registry.pilots.get(args.pilot)
    if pilot is None:
        print(f"unknown pilot {args.pilot!r}", file=sys.stderr)
        return EXIT_FAILED
    tz = registry.cities[pilot.city].tz
    method: Method = args.method or ("auto" if pilot.lot == "energy" else "tow")
    days = args.days or (365 if pilot.lot == "energy" else 56)
    with _connect(settings) as conn:
        end = (
            _ms(args.baseline_end)
            if args.baseline_end
            else store.intervention_start(conn, pilot.tenant)
        )
        if end is None:
            print("no start intervention recorded: pass --baseline-end", file=sys.stderr)
            return EXIT_FAILED
        period = (end - days * DAY_MS, end)
        series = [
            s for s in store.pilot_series(conn, pilot.tenant) if s[1] != "weather.temperature"
        ]
        if not series:
            print(f"no hourly results stored for {pilot.tenant}", file=sys.stderr)
            return EXIT_FAILED
        periods = store.excluded_periods(conn, [pilot.tenant])
        history = store.history_provider(conn, pilot.tenant)
        models = []
        with Progress(transient=True) as bar:
            task = bar.add_task("fitting", total=len(series))
            done = 0
            for metric in sorted({m for _, m in series}):
                ids = [d for d, m in series if m == metric]
                models += fit_devices(
                    history,
                    device_ids=ids,
                    metric=metric,
                    tz=tz,
                    period=period,
                    method=method,
                    fuel="gas" if metric == "energy.heat" else "electricity",
                    periods=periods,
                    progress=partial(_advance, bar, task, done),
                )
                done += len(ids)
        if not args.dry_run:
            store.store_models(conn, pilot.tenant, models)
    Console().print(fit_table(models, title=f"Baselines of {pilot.tenant} ({method})"))
    return EXIT_OK if all(m.usable for m in models) else EXIT_FAILED


def _report(args: argparse.Namespace) -> int:
    from pilotstream.registry import load_registry
    from processors.report import build_report, store, write_report
    from processors.report.data import assemble_input

    settings = settings_from_args(MvSettings, args)
    registry = load_registry()
    if args.pilot:
        if args.pilot not in registry.pilots:
            print(f"unknown pilot {args.pilot!r}", file=sys.stderr)
            return EXIT_FAILED
        tenants = [args.pilot]
        city = registry.city_of(args.pilot)
        title = args.pilot
    else:
        if args.city not in registry.cities:
            print(f"unknown city {args.city!r}", file=sys.stderr)
            return EXIT_FAILED
        tenants = sorted(t for t, p in registry.pilots.items() if p.city == args.city)
        city = registry.cities[args.city]
        title = city.name
    start, end = _ms(args.start), _ms(args.end)
    if end <= start:
        print("--to must be after --from", file=sys.stderr)
        return EXIT_FAILED
    with _connect(settings) as conn:
        windows = store.window_results(conn, tenants, start, end)
        models = store.load_models(conn, tenants)
        factors = store.factor_rows(conn, windows["factor_id"].unique().to_list())
        excluded = store.excluded_periods(conn, tenants)
    inp = assemble_input(
        title=title,
        tenants=tenants,
        lots=[registry.pilots[t].lot for t in tenants],
        tz=city.tz,
        start_ms=start,
        end_ms=end,
        windows=windows,
        models=models,
        factors=factors,
        excluded=excluded,
    )
    out = (
        args.out
        or settings.report_dir
        / f"mv_{title.replace(' ', '_')}_{args.start}_{args.end}.{args.format}"
    )
    written = write_report(build_report(inp), out, args.format)
    for path in written:
        print(path)
    return EXIT_OK


def _factors_load(args: argparse.Namespace) -> int:
    from processors.factors import FactorError, read_factor_csv, table_from_frame

    settings = settings_from_args(MvSettings, args)
    try:
        table = table_from_frame(read_factor_csv(args.file))
    except FileNotFoundError:
        print(f"{args.file}: no such file", file=sys.stderr)
        return EXIT_FAILED
    except FactorError as exc:
        for problem in str(exc).split("; "):
            print(f"{args.file}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.file}: {table.frame.height} factors valid")
    if args.dry_run:
        return EXIT_OK
    from processors.factors import insert_factors

    with _connect(settings) as conn:
        try:
            n = insert_factors(conn, table)
        except Exception as exc:
            msg = f"loading {args.file} failed: {exc}"
            raise PilotstreamError(msg) from exc
    print(f"loaded {n} factors into emission_factors")
    return EXIT_OK


def _factors_list(args: argparse.Namespace) -> int:
    from rich.console import Console

    from processors.factors import load_factors
    from processors.report.tables import factor_table

    settings = settings_from_args(MvSettings, args)
    series = [s for s in settings.factor_series.split(",") if s]
    table = load_factors(series=series)
    Console().print(factor_table(table.frame, scope_prefix=args.scope))
    return EXIT_OK


def _advance(bar: Any, task: Any, base: int, n: int, _total: int) -> None:
    """Progress callback of a fit: ``n`` of this metric's devices done after ``base`` others."""
    bar.update(task, completed=base + n)
