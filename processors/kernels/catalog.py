"""Stable integer codes for the strings of a partition's state: keys, devices, labels.

The event-time state (:mod:`processors.kernels.state`) keeps its rows as numbers: a reading's
(device_id, metric) is a key code, its (tenant, kind) a label code. Codes are given at first
sight and never change, so the state's rows are never re-indexed; the strings are looked up
once per run of an incoming frame (one run per Kafka record) and gathered back only for output.

``rank`` orders the key codes like the strings ((device_id, metric) byte order): rows sorted by
rank group a device's keys together and windows come out sorted like ``WINDOW_KEY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from processors.kernels.keys import KEY, run_starts

LABEL = ["tenant", "kind"]


def _no_keys() -> pl.DataFrame:
    return pl.DataFrame(schema={"device_id": pl.String, "metric": pl.String})


def _no_labels() -> pl.DataFrame:
    return pl.DataFrame(schema={"tenant": pl.String, "kind": pl.String})


def _no_runs() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "device_id": pl.String,
            "metric": pl.String,
            "tenant": pl.String,
            "kind": pl.String,
            "_key": pl.Int64,
            "_label": pl.Int64,
        }
    )


@dataclass(frozen=True, slots=True)
class Catalog:
    """The strings a state has seen; the code of each is its row (append-only)."""

    keys: pl.DataFrame = field(default_factory=_no_keys)  # device_id, metric
    key_device: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per key
    rank: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per key
    devices: pl.Series = field(default_factory=lambda: pl.Series("device_id", [], pl.String))
    labels: pl.DataFrame = field(default_factory=_no_labels)  # tenant, kind
    # each (device_id, metric, tenant, kind) seen, with its key and label codes: one lookup,
    # by a join, or by a dict when a small poll would make the join hash the whole table; the
    # dict's values are key << 32 | label, its repeated strings one object each (a dict entry
    # per device: 100,000 devices held ~40 MB in it with a tuple of codes and a string per cell)
    runs: pl.DataFrame = field(default_factory=_no_runs)
    run_codes: dict[tuple[str | None, ...], int] = field(default_factory=dict)

    @property
    def n_keys(self) -> int:
        """Number of key codes."""
        return self.keys.height

    @property
    def n_devices(self) -> int:
        """Number of device codes."""
        return self.devices.len()

    def with_devices(self, names: pl.Series) -> tuple[Catalog, np.ndarray]:
        """The code of each device name (new names get the next codes)."""
        table = self.devices.to_frame("device_id")
        codes, added = _lookup(names.to_frame("device_id"), table)
        if added is None:
            return self, codes
        return replace(self, devices=pl.concat([self.devices, added["device_id"]])), codes

    def with_keys(self, heads: pl.DataFrame) -> tuple[Catalog, np.ndarray]:
        """The code of each (device_id, metric) row of ``heads`` (new keys get the next codes)."""
        codes, added = _lookup(heads.select(KEY), self.keys)
        if added is None:
            return self, codes
        grown, device = self.with_devices(added["device_id"])
        keys = pl.concat([self.keys, added])
        rank = np.empty(keys.height, dtype=np.int64)
        by_key = keys.with_row_index("_k").sort(KEY, maintain_order=True)["_k"].to_numpy()
        rank[by_key] = np.arange(keys.height)
        return replace(
            grown,
            keys=keys,
            key_device=np.concatenate([self.key_device, device]),
            rank=rank,
        ), codes

    def with_labels(self, heads: pl.DataFrame) -> tuple[Catalog, np.ndarray]:
        """The code of each (tenant, kind) row of ``heads`` (new labels get the next codes)."""
        codes, added = _lookup(heads.select(LABEL), self.labels)
        if added is None:
            return self, codes
        return replace(self, labels=pl.concat([self.labels, added])), codes

    def code_rows(
        self, frame: pl.DataFrame, *, labels: bool = True
    ) -> tuple[Catalog, np.ndarray, np.ndarray]:
        """Key and label codes of each row of ``frame`` (label codes empty without ``labels``).

        The strings are compared at run boundaries only: one lookup per run.
        """
        columns = [*KEY, *LABEL] if labels else KEY
        starts = run_starts(frame, columns)
        heads = pl.DataFrame([frame.get_column(c) for c in columns])[starts]
        lengths = np.diff(np.append(starts, frame.height))
        if not labels:
            out, key = self.with_keys(heads)
            return out, np.repeat(key, lengths), np.zeros(0, np.int64)
        if heads.height * 2 <= len(self.run_codes):  # one by one: a few runs (per record)
            got = [self.run_codes.get(t) for t in _tuples(heads, columns)]
            if None not in got:
                packed = np.array(got, dtype=np.int64)
                key, label = packed >> 32, packed & _LOW
                return self, np.repeat(key, lengths), np.repeat(label, lengths)
        nulls = bool(heads.null_count().sum_horizontal().item())  # null-aware joins cost more
        found = heads.join(
            self.runs, on=columns, how="left", maintain_order="left", nulls_equal=nulls
        )
        unseen = found["_key"].is_null()
        if not unseen.any():  # the usual poll: every run seen before
            key, label = found["_key"].to_numpy(), found["_label"].to_numpy()
            return self, np.repeat(key, lengths), np.repeat(label, lengths)
        out, key = self.with_keys(heads)
        out, label = out.with_labels(heads)
        new = (
            heads.with_columns(_key=pl.Series(key), _label=pl.Series(label))
            .filter(unseen)
            .unique(columns, keep="first", maintain_order=True)
        )
        run_codes = dict(self.run_codes)  # a copy: the catalogs of earlier states stay as they were
        packed = (new["_key"].to_numpy() << 32) | new["_label"].to_numpy()
        run_codes.update(zip(_tuples(new, columns, shared=True), packed.tolist(), strict=True))
        out = replace(
            out, runs=pl.concat([self.runs, new.select(self.runs.columns)]), run_codes=run_codes
        )
        return out, np.repeat(key, lengths), np.repeat(label, lengths)


_LOW = (1 << 32) - 1


def _tuples(
    frame: pl.DataFrame, columns: list[str], *, shared: bool = False
) -> list[tuple[Any, ...]]:
    """The rows of ``columns`` as tuples; ``shared``: equal values are one object."""
    if not shared:
        return list(zip(*(frame[c].to_list() for c in columns), strict=True))
    cells = []
    for c in columns:
        pool: dict[Any, Any] = {}
        cells.append([pool.setdefault(v, v) for v in frame[c].to_list()])
    return list(zip(*cells, strict=True))


def _lookup(rows: pl.DataFrame, table: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame | None]:
    """Position of each row in ``table`` (unique rows), new rows getting the next positions,
    and the distinct new rows in order of first sight (None: none)."""
    on = rows.columns
    found = rows.join(
        table.with_row_index("_c"), on=on, how="left", maintain_order="left", nulls_equal=True
    )["_c"]
    missing = found.is_null()
    if not missing.any():
        return found.cast(pl.Int64).to_numpy(), None
    added = rows.filter(missing).unique(maintain_order=True)
    fresh = rows.join(
        added.with_row_index("_c"), on=on, how="left", maintain_order="left", nulls_equal=True
    )["_c"]
    codes = np.where(
        missing.to_numpy(),
        fresh.cast(pl.Int64).fill_null(-1).to_numpy() + table.height,
        found.cast(pl.Int64).fill_null(-1).to_numpy(),
    )
    return codes, added
