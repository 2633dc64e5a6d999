"""Emission factors: validation, validity across boundaries, fine series over annual values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from processors.factors import FactorError, load_factors, read_factor_csv, validate_factors

HEADER = "factor_id,scope,unit,value,basis,source,year,valid_from,valid_to\n"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


def test_seed_table_loads_and_annual_factor_applies_from_its_start(tmp_path: Path) -> None:
    table = load_factors()
    result = table.lookup(
        ["grid:FR", "grid:EE", "mode:bike"], [ms("2024-06-01"), ms("2023-01-01"), ms("2025-03-01")]
    )
    assert result["factor"].to_list() == [0.056, 0.4167, 0.0]
    assert result["factor_id"].to_list() == ["grid-fr-2023", "grid-ee-2023", "mode-bike-2025"]
    assert result["exact"].to_list() == [True, True, True]


def test_newer_annual_factor_closes_the_older_one_at_its_start(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "a.csv",
        "fr23,grid:FR,kgCO2e/kWh,0.056,lifecycle,Ember,2023,2023-01-01,\n"
        "fr24,grid:FR,kgCO2e/kWh,0.050,lifecycle,Ember,2024,2024-01-01,\n",
    )
    table = load_factors(path)
    ts = [ms("2023-12-31T23:59:59"), ms("2024-01-01T00:00:00"), ms("2022-05-01")]
    result = table.lookup(["grid:FR"] * 3, ts)
    assert result["factor_id"].to_list() == ["fr23", "fr24", "fr23"]
    assert result["exact"].to_list() == [True, True, False]  # before any factor: earliest, flagged


def test_hourly_series_overrides_annual_where_it_covers(tmp_path: Path) -> None:
    series = _write(
        tmp_path,
        "s.csv",
        "fr-h0,grid:FR,kgCO2e/kWh,0.030,direct,RTE eco2mix,2024,2024-03-01T10:00:00Z,2024-03-01T11:00:00Z\n"
        "fr-h1,grid:FR,kgCO2e/kWh,0.070,direct,RTE eco2mix,2024,2024-03-01T11:00:00,2024-03-01T12:00:00\n",
    )
    table = load_factors(series=[series])
    ts = [
        ms("2024-03-01T09:59:59"),
        ms("2024-03-01T10:00:00"),
        ms("2024-03-01T11:30:00"),
        ms("2024-03-01T12:00:00"),
    ]
    result = table.lookup(["grid:FR"] * 4, ts)
    assert result["factor_id"].to_list() == ["grid-fr-2023", "fr-h0", "fr-h1", "grid-fr-2023"]
    assert result["factor"].to_list() == [0.056, 0.030, 0.070, 0.056]


def test_unknown_scope_gives_null() -> None:
    result = load_factors().lookup(["grid:XX"], [0])
    assert result["factor"].to_list() == [None]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("x,grid:FR,kgCO2e/kWh,abc,l,S,2023,2023-01-01,", "not a finite number"),
        ("x,grid:FR,kgCO2e/kWh,-1,l,S,2023,2023-01-01,", "not a finite number"),
        ("x,GRID FR,kgCO2e/kWh,1,l,S,2023,2023-01-01,", "is not like grid:FR"),
        ("x,grid:FR,g/kWh,1,l,S,2023,2023-01-01,", "not kgCO2e"),
        ("x,grid:FR,kgCO2e/kWh,1,l,S,20x3,2023-01-01,", "is not a year"),
        ("x,grid:FR,kgCO2e/kWh,1,l,S,2023,yesterday,", "is not a date"),
        ("x,grid:FR,kgCO2e/kWh,1,l,S,2023,2023-01-01,2022-01-01", "not after valid_from"),
        ("x,grid:FR,kgCO2e/kWh,1,l,,2023,2023-01-01,", "empty source"),
    ],
)
def test_validation_names_each_problem(row: str, problem: str) -> None:
    problems = validate_factors(read_factor_csv((HEADER + row + "\n").encode()))
    assert any(problem in p for p in problems), problems


def test_overlapping_series_and_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "o.csv",
        "a,grid:FR,kgCO2e/kWh,1,l,S,2024,2024-01-01T00:00:00,2024-01-01T02:00:00\n"
        "b,grid:FR,kgCO2e/kWh,1,l,S,2024,2024-01-01T01:00:00,2024-01-01T03:00:00\n"
        "b,grid:NL,kgCO2e/kWh,1,l,S,2024,2024-01-01T01:00:00,2024-01-01T03:00:00\n",
    )
    with pytest.raises(FactorError, match="appears more than once"):
        load_factors(path)
    problems = validate_factors(read_factor_csv(path).head(2))
    assert problems == ["validity of a overlaps b (scope grid:FR)"]


def test_missing_columns_are_refused() -> None:
    assert validate_factors(pl.DataFrame({"factor_id": ["x"]}))[0].startswith("missing columns")
