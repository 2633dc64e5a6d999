"""Errors of the storage package; the callers decide on ``reason`` and ``retriable``."""

from __future__ import annotations

from pilotstream.errors import PilotstreamError


class StorageError(PilotstreamError):
    """A database operation failed; ``retriable`` says whether trying again may help."""

    reason = "storage_failed"


class StaleGeneration(StorageError):
    """A consumer of an older generation tried to commit offsets after a newer one claimed them.

    The transaction was rolled back: the caller lost its partitions and must stop processing them.
    """

    reason = "stale_generation"
    retriable = False


class InvalidBatch(StorageError):
    """A batch holds values PostgreSQL must not receive (NUL in text, non-finite numbers, nulls)."""

    reason = "invalid_batch"
    retriable = False


class MigrationError(StorageError):
    """A migration is malformed, failed, or was edited after it was applied."""

    reason = "migration_failed"
