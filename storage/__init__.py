"""TimescaleDB storage: migrations, the batch writer with fenced offsets, queries, roles, retention.

Modules import psycopg and polars; keep them out of kernels. Entry points:
``Writer.commit_batch`` (processors), ``claim_partitions`` / ``load_offsets`` (on assignment),
``storage.queries`` (dashboards), ``setup_database`` and ``pilotstream db ...`` (operations),
``storage.testing.create_temp_database`` (integration tests of every package).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module; imported on first use so ``pilotstream --help`` (which imports
# storage.cli) does not load psycopg and polars
_EXPORTS = {
    "Claim": "storage.offsets",
    "CommitResult": "storage.writer",
    "InvalidBatch": "storage.errors",
    "MigrationError": "storage.errors",
    "SetupReport": "storage.setup",
    "StaleGeneration": "storage.errors",
    "StorageError": "storage.errors",
    "Writer": "storage.writer",
    "claim_partitions": "storage.offsets",
    "commit_offsets": "storage.offsets",
    "load_offsets": "storage.offsets",
    "setup_database": "storage.setup",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'storage' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Claim",
    "CommitResult",
    "InvalidBatch",
    "MigrationError",
    "SetupReport",
    "StaleGeneration",
    "StorageError",
    "Writer",
    "claim_partitions",
    "commit_offsets",
    "load_offsets",
    "setup_database",
]
