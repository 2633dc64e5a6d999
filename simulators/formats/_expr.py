"""Polars expression helpers shared by the encoders: JSON pieces built for every reading at once."""

from __future__ import annotations

import polars as pl

from pilotstream.vocab import UNITS


def cat(*parts: str | pl.Expr) -> pl.Expr:
    """Concatenate literal strings and string expressions (no placeholder syntax to trip over)."""
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])


def iso(col: str = "ts_ms") -> pl.Expr:
    """UTC ms -> ``2026-03-01T10:15:00Z`` (readings are whole seconds)."""
    return pl.from_epoch(pl.col(col), time_unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def sent_value() -> pl.Expr:
    """The number a device sends: the canonical ``value`` expressed in the reading's ``unit``."""
    scale = pl.col("unit").replace_strict({u: s for u, (_, s, _) in UNITS.items()}, default=1.0)
    offset = pl.col("unit").replace_strict({u: o for u, (_, _, o) in UNITS.items()}, default=0.0)
    return ((pl.col("value") - offset) / scale).round(6)


def json_number(expr: pl.Expr) -> pl.Expr:
    """A float as a JSON number literal (shortest round-trip form)."""
    return expr.cast(pl.String)


def quoted(expr: pl.Expr) -> pl.Expr:
    """A string as a JSON string literal (callers only pass ids from a safe charset)."""
    return pl.concat_str([pl.lit('"'), expr, pl.lit('"')])
