"""The processor's allocator settings: applied before polars loads, the environment wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from processors.allocator import ARENA_MAX, JEMALLOC_CONF, MMAP_THRESHOLD

SCRIPT = """
import json, os
from processors.allocator import tune_allocators
done = tune_allocators()
import polars
print(json.dumps({"done": done, "conf": os.environ.get("_RJEM_MALLOC_CONF", "")}))
"""


def _run(env: dict[str, str]) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if k not in ("_RJEM_MALLOC_CONF",)}
    clean = {k: v for k, v in clean.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**clean, **env}, capture_output=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_settings_reach_jemalloc_and_glibc_before_polars_loads() -> None:
    r = _run({})
    assert r["done"] == [
        f"jemalloc {JEMALLOC_CONF}",
        f"glibc mmap_threshold {MMAP_THRESHOLD}",
        f"glibc arena_max {ARENA_MAX}",
    ]
    # polars puts its defaults first: the last value of an option is the one jemalloc keeps
    assert str(r["conf"]).endswith("," + JEMALLOC_CONF)


def test_settings_from_the_environment_are_left_alone() -> None:
    r = _run({"_RJEM_MALLOC_CONF": "dirty_decay_ms:0", "MALLOC_ARENA_MAX": "4"})
    assert r["done"] == [f"glibc mmap_threshold {MMAP_THRESHOLD}"]
    assert str(r["conf"]).endswith(",dirty_decay_ms:0")
