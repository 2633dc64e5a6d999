"""Edition detection and the Community-edition features, against a recording fake connection
(the local stack runs the Apache edition, where these statements are refused)."""

from __future__ import annotations

from typing import Any

import pytest

from storage.editions import apply_edition_features, detect_edition


class _Result:
    def __init__(self, row: tuple[Any, ...] | None):
        self._row = row

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._row


class FakeConnection:
    """Answers the licence and compression questions; records every other statement."""

    def __init__(self, license_name: str | None, compressed: set[str] | None = None):
        self.license = license_name
        self.compressed = compressed or set()
        self.statements: list[str] = []

    def execute(self, query: str, params: Any = None) -> _Result:
        if "timescaledb.license" in query:
            return _Result((self.license,))
        if "compression_enabled" in query:
            return _Result((params[0] in self.compressed,))
        self.statements.append(" ".join(query.split()))
        return _Result(None)


@pytest.mark.parametrize(
    ("license_name", "edition"),
    [("apache", "apache"), ("timescale", "timescale"), (None, "apache")],
)
def test_detect_edition(license_name: str | None, edition: str) -> None:
    assert detect_edition(FakeConnection(license_name)) == edition  # type: ignore[arg-type]


def test_apache_edition_gets_nothing() -> None:
    conn = FakeConnection("apache")
    assert apply_edition_features(conn, retention_days=30) == "apache"  # type: ignore[arg-type]
    assert conn.statements == []


def test_community_edition_gets_compression_retention_and_the_aggregate() -> None:
    conn = FakeConnection("timescale", compressed={"window_results"})
    assert apply_edition_features(conn, retention_days=30) == "timescale"  # type: ignore[arg-type]
    text = "\n".join(conn.statements)
    assert "ALTER TABLE readings SET (timescaledb.compress" in text
    assert "ALTER TABLE window_results SET" not in text  # already compressed: left as it is
    assert text.count("add_compression_policy") == 2
    assert "add_retention_policy('readings'" in text
    assert "add_retention_policy('rejections'" in text
    assert "add_retention_policy('window_results'" not in text
    assert (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS results_hourly WITH (timescaledb.continuous)"
        in text
    )
    assert "add_continuous_aggregate_policy('results_hourly'" in text
