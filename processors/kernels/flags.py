"""Quality flag bits carried by readings and OR-ed into the windows they fall in.

A window whose flags intersect :data:`MASKING` (or whose coverage is too low) reports its actual and
baseline, but its delta and avoided emissions are masked to zero: gaps are never filled.
"""

from __future__ import annotations

OUT_OF_RANGE = 1  # value outside the physical range of the metric (by kind)
STUCK = 2  # value unchanged for ``stuck_run`` readings in a row
SPIKE = 4  # more than 3 interquartile ranges above the median
NEGATIVE = 8  # counter went down (reset) or a delta/count is negative
GAP = 16  # more than ``gap_factor`` expected intervals since the previous reading
ROLLOVER = 32  # counter wrapped at its register maximum (consumption still computed)
RESET = 64  # counter reset (meter swap): consumption after reset = new value
LOW_COVERAGE = 128  # window only: coverage below the minimum
EXCLUDED = 256  # window only: inside an intervention or non-routine event
GLITCH = 512  # counter reading off its register's trajectory (and the reading after it)

NAMES: dict[int, str] = {
    OUT_OF_RANGE: "out_of_range",
    STUCK: "stuck",
    SPIKE: "spike",
    NEGATIVE: "negative",
    GAP: "gap",
    ROLLOVER: "rollover",
    RESET: "reset",
    LOW_COVERAGE: "low_coverage",
    EXCLUDED: "excluded",
    GLITCH: "glitch",
}

# flags that make a window's avoided energy untrustworthy
MASKING = OUT_OF_RANGE | STUCK | SPIKE | GAP | RESET | LOW_COVERAGE | EXCLUDED | GLITCH


def describe(flags: int) -> list[str]:
    """Names of the bits set in ``flags``, lowest bit first."""
    return [name for bit, name in NAMES.items() if flags & bit]
