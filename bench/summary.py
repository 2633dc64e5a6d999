"""The JSON summary every benchmark prints (DESIGN.md §8), and small measuring helpers."""

from __future__ import annotations

import os
import sys
from typing import Any

import psutil


def summary(
    name: str,
    params: dict[str, Any],
    results: dict[str, Any],
    *,
    peer_name: str | None = None,
    peer_results: dict[str, Any] | None = None,
    ratio_key: str | None = None,
) -> dict[str, Any]:
    """Build the summary; ``ratio`` is ours / theirs on ``ratio_key`` (higher is better)."""
    out: dict[str, Any] = {"benchmark": name, "params": params, "results": results}
    if peer_name is not None and peer_results is not None:
        ratio = None
        if ratio_key and peer_results.get(ratio_key):
            ratio = round(results[ratio_key] / peer_results[ratio_key], 3)
        out["peer"] = {"name": peer_name, "results": peer_results, "ratio": ratio}
    return out


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process in MiB."""
    rss: int = psutil.Process(pid or os.getpid()).memory_info().rss
    return round(rss / 2**20, 1)


def progress(msg: str) -> None:
    """Progress to stderr (stdout is for the JSON line)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)
