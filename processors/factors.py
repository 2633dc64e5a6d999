"""Emission factors: loaded from CSV with their source, year, basis and validity; vectorised lookup.

One file format for all factors (``pilotstream/data/emission_factors.csv`` is the seed)::

    factor_id,scope,unit,value,basis,source,year,valid_from,valid_to

``valid_from``/``valid_to`` are ISO dates or date-times (UTC when no offset); an empty
``valid_to`` is open-ended, closed by the next factor of the same scope. Factors valid for less than
:data:`FINE_SPAN_DAYS` (e.g. an hourly grid series) form the *fine* tier, which overrides the annual
tier wherever it covers the time. Where no annual factor is valid yet (a time before the earliest
``valid_from``), the earliest one is used and the result is marked ``exact = False``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

COLUMNS = (
    "factor_id",
    "scope",
    "unit",
    "value",
    "basis",
    "source",
    "year",
    "valid_from",
    "valid_to",
)
FINE_SPAN_DAYS = 300
_SCOPE = re.compile(r"^[a-z]+:[A-Za-z0-9_]+$")
_DAY_MS = 86_400_000


class FactorError(ValueError):
    """A factor file is malformed; the message lists every problem found."""


def read_factor_csv(source: Path | str | bytes) -> pl.DataFrame:
    """Read a factor CSV as strings (validation decides what the values mean)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
    return frame.with_columns(pl.all().fill_null(""))


def validate_factors(raw: pl.DataFrame) -> list[str]:
    """Every problem of a raw factor frame (empty list: valid); rows are numbered as CSV lines."""
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        return [f"missing columns: {', '.join(missing)}"]
    problems: list[str] = []
    try:
        parsed = _parse(raw)
    except pl.exceptions.PolarsError as exc:
        return [f"unreadable values: {exc}"]
    for i, row in enumerate(parsed.iter_rows(named=True), start=2):
        if not row["factor_id"]:
            problems.append(f"line {i}: empty factor_id")
        if not _SCOPE.match(row["scope"] or ""):
            problems.append(f"line {i}: scope {row['scope']!r} is not like grid:FR or mode:bike")
        if not (row["unit"] or "").startswith("kgCO2e/"):
            problems.append(f"line {i}: unit {row['unit']!r} is not kgCO2e per something")
        if row["value"] is None or not np.isfinite(row["value"]) or row["value"] < 0:
            problems.append(f"line {i}: value {raw['value'][i - 2]!r} is not a finite number >= 0")
        if row["year"] is None or not 1990 <= row["year"] <= 2100:
            problems.append(f"line {i}: year {raw['year'][i - 2]!r} is not a year")
        if row["valid_from_ms"] is None:
            problems.append(f"line {i}: valid_from {raw['valid_from'][i - 2]!r} is not a date")
        elif row["valid_to_ms"] is not None and row["valid_to_ms"] <= row["valid_from_ms"]:
            problems.append(f"line {i}: valid_to is not after valid_from")
        if raw["valid_to"][i - 2] and row["valid_to_ms"] is None:
            problems.append(f"line {i}: valid_to {raw['valid_to'][i - 2]!r} is not a date")
        if not row["source"]:
            problems.append(f"line {i}: empty source")
    dupes = parsed.filter(pl.col("factor_id").is_duplicated())["factor_id"].unique().to_list()
    problems += [f"factor_id {d!r} appears more than once" for d in sorted(dupes)]
    if not problems:
        problems += _overlaps(parsed)
    return problems


@dataclass(frozen=True)
class FactorTable:
    """Validated factors with parsed validity (``valid_from_ms``, ``valid_to_ms``, ``tier``)."""

    frame: pl.DataFrame

    def lookup(
        self, scope: Sequence[str] | pl.Series, ts_ms: Sequence[int] | np.ndarray
    ) -> pl.DataFrame:
        """The factor valid for each (scope, time), in input order.

        Returns:
            Columns ``factor`` (kgCO2e per unit, null for an unknown scope), ``factor_id`` and
            ``exact`` (False when an earlier-than-known time fell back to the earliest factor).
        """
        queries = pl.DataFrame(
            {"scope": pl.Series(scope, dtype=pl.String), "ts_ms": pl.Series(ts_ms, dtype=pl.Int64)}
        )
        # windows of many devices share (scope, time): look each pair up once
        q = queries.unique(maintain_order=False).with_row_index("i")
        q_sorted = q.sort("ts_ms")
        picks = []
        for tier in (1, 0):
            right = self.frame.filter(pl.col("tier") == tier).sort("valid_from_ms")
            m = q_sorted.join_asof(
                right.select("scope", "valid_from_ms", "valid_to_ms", "value", "factor_id"),
                left_on="ts_ms",
                right_on="valid_from_ms",
                by="scope",
                strategy="backward",
                check_sortedness=False,
            ).filter(pl.col("valid_to_ms").is_null() | (pl.col("ts_ms") < pl.col("valid_to_ms")))
            picks.append(
                m.select(
                    "i",
                    pl.col("value").alias(f"v{tier}"),
                    pl.col("factor_id").alias(f"id{tier}"),
                )
            )
        earliest = (
            self.frame.filter(pl.col("tier") == 0)
            .sort("valid_from_ms")
            .group_by("scope", maintain_order=True)
            .first()
            .select("scope", v_first="value", id_first="factor_id")
        )
        found = (
            q.join(picks[0], on="i", how="left")
            .join(picks[1], on="i", how="left")
            .join(earliest, on="scope", how="left")
            .drop("i")
        )
        out = queries.join(found, on=["scope", "ts_ms"], how="left", maintain_order="left")
        return out.select(
            factor=pl.coalesce("v1", "v0", "v_first"),
            factor_id=pl.coalesce("id1", "id0", "id_first"),
            exact=pl.col("v1").is_not_null() | pl.col("v0").is_not_null(),
        )

    def describe(self, factor_ids: Iterable[str]) -> pl.DataFrame:
        """The rows of the given factor ids (for reports: value, unit, basis, source, year)."""
        ids = sorted(set(factor_ids))
        return (
            self.frame.filter(pl.col("factor_id").is_in(ids))
            .select(list(COLUMNS))
            .sort("factor_id")
        )


def load_factors(
    path: Path | str | None = None, *, series: Iterable[Path | str] = ()
) -> FactorTable:
    """Load the annual table (packaged seed when ``path`` is None) plus time-varying series files.

    Raises:
        FactorError: any file is malformed, or validity periods of one scope and tier overlap.
    """
    raws = []
    if path is None:
        raws.append(
            read_factor_csv(
                resources.files("pilotstream").joinpath("data/emission_factors.csv").read_bytes()
            )
        )
    else:
        raws.append(read_factor_csv(path))
    raws += [read_factor_csv(s) for s in series]
    for raw in raws:
        missing = [c for c in COLUMNS if c not in raw.columns]
        if missing:
            msg = f"missing columns: {', '.join(missing)}"
            raise FactorError(msg)
    return table_from_frame(pl.concat([r.select(list(COLUMNS)) for r in raws]))


def table_from_frame(raw: pl.DataFrame) -> FactorTable:
    """Validate a raw (string) factor frame and build the table; raises FactorError."""
    problems = validate_factors(raw)
    if problems:
        raise FactorError("; ".join(problems))
    return FactorTable(_parse(raw))


def insert_factors(conn: Any, table: FactorTable) -> int:
    """Insert (or update by id) the factors into ``emission_factors``; returns the row count.

    ``conn`` is a psycopg connection; the caller owns the transaction.
    """
    rows = table.frame.select(
        "factor_id",
        "scope",
        "unit",
        "value",
        "basis",
        "source",
        "year",
        pl.from_epoch("valid_from_ms", "ms").dt.replace_time_zone("UTC").alias("valid_from"),
        pl.from_epoch("valid_to_ms", "ms").dt.replace_time_zone("UTC").alias("valid_to"),
    ).rows()
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO emission_factors (id, scope, unit, value, basis, source, year,"
            " valid_from, valid_to) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET scope = EXCLUDED.scope, unit = EXCLUDED.unit,"
            " value = EXCLUDED.value, basis = EXCLUDED.basis, source = EXCLUDED.source,"
            " year = EXCLUDED.year, valid_from = EXCLUDED.valid_from, valid_to = EXCLUDED.valid_to",
            rows,
        )
    return len(rows)


def _iso_ms(col: str) -> pl.Expr:
    text = pl.col(col).str.strip_chars().str.replace(r"Z$", "+00:00")
    text = (
        pl.when(text.str.len_chars() == 10)
        .then(text + "T00:00:00+00:00")
        .when(text.str.contains(r"[+-]\d\d:\d\d$"))
        .then(text)
        .otherwise(text + "+00:00")
    )
    parsed = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%z", strict=False, time_zone="UTC")
    return pl.when(pl.col(col).str.strip_chars() == "").then(None).otherwise(parsed.dt.epoch("ms"))


def _parse(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.select(
        "factor_id",
        "scope",
        "unit",
        pl.col("value").str.strip_chars().cast(pl.Float64, strict=False),
        "basis",
        "source",
        pl.col("year").str.strip_chars().cast(pl.Int32, strict=False),
        "valid_from",
        "valid_to",
        valid_from_ms=_iso_ms("valid_from"),
        valid_to_ms=_iso_ms("valid_to"),
    ).with_columns(
        tier=pl.when(
            pl.col("valid_to_ms").is_not_null()
            & (pl.col("valid_to_ms") - pl.col("valid_from_ms") < FINE_SPAN_DAYS * _DAY_MS)
        )
        .then(1)
        .otherwise(0)
    )


def _overlaps(parsed: pl.DataFrame) -> list[str]:
    s = parsed.sort("scope", "tier", "valid_from_ms").with_columns(
        next_from=pl.col("valid_from_ms").shift(-1).over("scope", "tier"),
        next_id=pl.col("factor_id").shift(-1).over("scope", "tier"),
    )
    bad = s.filter(
        pl.col("next_from").is_not_null()
        & (
            (pl.col("next_from") == pl.col("valid_from_ms"))
            | (pl.col("valid_to_ms").is_not_null() & (pl.col("next_from") < pl.col("valid_to_ms")))
        )
    )
    return [
        f"validity of {a} overlaps {b} (scope {sc})"
        for a, b, sc in bad.select("factor_id", "next_id", "scope").iter_rows()
    ]
