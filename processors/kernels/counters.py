"""Cumulative registers to interval consumption: glitches, rollovers and resets told apart.

Rows are sorted by (key code, time). A register only counts up, so a reading that leaves the
trajectory of its neighbours is one of three things, decided by what comes next:

- **glitch**: the reading lies outside ``[previous, next]`` while ``next >= previous`` (a Wh number
  labelled kWh, a swapped clock, a one-off corrupt value). The register came back, so the reading
  is wrong, not the meter: its amount is 0, the next reading's consumption is taken from the last
  good value, and both readings are flagged ``GLITCH`` (the interval's consumption moved one
  reading later, possibly into another window);
- **rollover**: a drop from near the register maximum (``rollover_margin``): consumption is
  ``max - previous + new``;
- **reset** (meter swap): any other drop that persists: consumption is the new value;
- a wrap or reset must consume a plausible amount (at most ``reset_factor`` times the larger
  neighbouring interval's): a drop that is neither (after a glitch on a key's first reading, say)
  leaves the interval's consumption unknown: amount 0, ``GLITCH``.

Only a key's last reading has no successor yet; it is classified as if its successor confirmed it,
and the event-time kernels keep its window open until the successor (or the idle timer) arrives
(:func:`pending_counters`), so a stream classifies every reading exactly as one pass does.
"""

from __future__ import annotations

import numpy as np

from processors.kernels import flags as qf


def register_max_of(prev: np.ndarray) -> np.ndarray:
    """Register maximum inferred from a value: the next power of ten (fixed digit width)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 ** (np.floor(np.log10(prev)) + 1.0)
    return np.where(prev > 0, out, np.nan)


def glitches(code: np.ndarray, value: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """True for counter readings outside ``[previous, next]`` of their key while next >= previous.

    Of two such readings in a row only the first is a glitch: measured from the last good value,
    the second one is back on the trajectory (two swapped readings, for instance).
    """
    n = len(value)
    out = np.zeros(n, dtype=bool)
    if n < 3:
        return out
    before, here, after = value[:-2], value[1:-1], value[2:]
    same_key = (code[:-2] == code[1:-1]) & (code[1:-1] == code[2:])
    out[1:-1] = same_key & counter[1:-1] & (before <= after) & ((here > after) | (here < before))
    out[1:] &= ~out[:-1].copy()
    return out


def counter_amounts(
    *,
    code: np.ndarray,
    value: np.ndarray,
    counter: np.ndarray,
    first: np.ndarray,
    register_max: np.ndarray,
    rollover_margin: float,
    reset_factor: float = 20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Consumption since the last good reading and the counter flags, per row.

    Args:
        code: key code per row (rows sorted by code, then time).
        value: reading value.
        counter: the row is a cumulative register (other rows get ``amount = value``).
        first: the row is the first of its key (its consumption is unknown: NaN).
        register_max: known register maximum per code (NaN: infer from the digit width).
        rollover_margin: a drop from within this share of the maximum is a rollover.
        reset_factor: a wrap, or a reset (a new register starts near 0), consumes at most this
            many times the larger neighbouring interval's consumption; a drop that is neither
            means the previous value was wrong or a new meter started elsewhere: the interval's
            consumption is unknown (amount 0, GLITCH).

    Returns:
        ``amount`` (NaN for a counter's first reading) and ``flags`` (GLITCH, ROLLOVER, RESET,
        NEGATIVE bits) per row.
    """
    n = len(value)
    flags = np.zeros(n, dtype=np.int64)
    glitch = glitches(code, value, counter)
    after_glitch = np.zeros(n, dtype=bool)
    after_glitch[1:] = glitch[:-1]  # same key: a glitch is never a key's last row
    prev = np.roll(value, 1)
    prev_good = np.where(after_glitch, np.roll(value, 2), prev)

    diff = value - prev_good
    amount = np.where(counter, diff, value)
    down = np.flatnonzero(counter & ~first & ~glitch & (diff < 0))
    if len(down):
        before, now = prev_good[down], value[down]
        known = register_max[code[down]]
        reg_max = np.where(np.isnan(known), register_max_of(before), known)
        # a wrap or a new meter (which starts near 0) consumed about one interval's worth
        typical = _neighbour_steps(code, value, down)
        wrapped = reg_max - before + now
        with np.errstate(invalid="ignore"):
            rollover = (before >= (1.0 - rollover_margin) * reg_max) & (
                np.isnan(typical) | (wrapped <= reset_factor * typical)
            )
            restart = ~rollover & (np.isnan(typical) | (now <= reset_factor * typical))
        amount[down] = np.where(rollover, wrapped, np.where(restart, now, 0.0))
        flags[down] |= qf.NEGATIVE | np.where(
            rollover, qf.ROLLOVER, np.where(restart, qf.RESET, qf.GLITCH)
        )
    amount[glitch] = 0.0
    flags[glitch | after_glitch] |= qf.GLITCH
    amount[counter & first] = np.nan
    return amount, flags


def _neighbour_steps(code: np.ndarray, value: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The larger of the consumptions just before and just after each of ``rows`` (NaN: none)."""
    n = len(value)
    out = np.full(len(rows), np.nan)
    for a, b in ((rows - 2, rows - 1), (rows, rows + 1)):
        inside = (a >= 0) & (b < n)
        a_, b_ = np.clip(a, 0, n - 1), np.clip(b, 0, n - 1)
        step = value[b_] - value[a_]
        ok = inside & (code[a_] == code[rows]) & (code[b_] == code[rows]) & (step >= 0)
        out = np.where(ok, np.fmax(out, step), out)
    return out


def neighbour_spikes(
    code: np.ndarray, value: np.ndarray, checked: np.ndarray, ratio: float, floor: float
) -> np.ndarray:
    """True where a per-interval amount exceeds ``ratio`` x the larger of both neighbours of
    its key plus ``floor``: a one-reading spike (a key's last reading waits for its successor)."""
    out = np.zeros(len(value), dtype=bool)
    if len(value) < 3:
        return out
    same_key = (code[:-2] == code[1:-1]) & (code[1:-1] == code[2:])
    around = np.maximum(value[:-2], value[2:])
    out[1:-1] = same_key & checked[1:-1] & (value[1:-1] > ratio * around + floor)
    return out


def counter_since(code: np.ndarray, ts: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Time of each counter reading's predecessor in its key (-1: not a counter, or first)."""
    since = np.full(len(ts), -1, dtype=np.int64)
    if len(ts) > 1:
        follows = counter[1:] & (code[1:] == code[:-1])
        since[1:] = np.where(follows, ts[:-1], -1)
    return since


def pending_counters(
    code: np.ndarray, ts: np.ndarray, waiting: np.ndarray, n_codes: int
) -> np.ndarray:
    """Per code, the event time before which its windows may close (int64 max: no limit).

    A key whose last row is ``waiting`` (a counter reading that may still be reclassified by its
    successor) keeps the windows from that row's time on open: the last row's window ends at or
    after its time, every earlier row already has its successor.
    """
    hold = np.full(n_codes, np.iinfo(np.int64).max, dtype=np.int64)
    if len(code) == 0:
        return hold
    last = np.ones(len(code), dtype=bool)
    last[:-1] = code[:-1] != code[1:]
    pending = np.flatnonzero(last & waiting)
    hold[code[pending]] = ts[pending]
    return hold
