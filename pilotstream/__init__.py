"""pilotstream: shared contracts, codec, settings, errors and the CLI (no I/O at import)."""

from pilotstream.contracts import NO_SEQ, Reading, ReadingBatch, Rejection, WindowDelta
from pilotstream.errors import DecodeError, PilotstreamError, ServiceUnavailable, SettingsError

__all__ = [
    "NO_SEQ",
    "DecodeError",
    "PilotstreamError",
    "Reading",
    "ReadingBatch",
    "Rejection",
    "ServiceUnavailable",
    "SettingsError",
    "WindowDelta",
]
