"""Window and lateness rules of the event-time kernels."""

from __future__ import annotations

from dataclasses import dataclass, field

from processors.kernels.clean import CleanParams
from processors.kernels.windows import WIDTHS_S


@dataclass(frozen=True, kw_only=True)
class EventTimeParams:
    """Window and lateness rules."""

    widths_s: tuple[int, ...] = WIDTHS_S  # window widths
    allowed_lateness_ms: int = 3_600_000  # late data within this restates a closed window
    max_future_ms: int = 300_000  # event time further ahead of now is refused
    min_coverage: float = 0.8  # windows below get LOW_COVERAGE
    clean: CleanParams = field(default_factory=CleanParams)

    def __post_init__(self) -> None:
        if not self.widths_s or any(w <= 0 or w % 60 for w in self.widths_s):
            msg = f"widths_s must be positive whole minutes, not {self.widths_s}"
            raise ValueError(msg)
        if self.allowed_lateness_ms < 0 or self.max_future_ms < 0:
            msg = "allowed_lateness_ms and max_future_ms must be >= 0"
            raise ValueError(msg)

    @property
    def widest_s(self) -> int:
        """The widest window, seconds: it decides when a reading is final."""
        return max(self.widths_s)
