"""Allocators of a long-running processor, set to give freed memory back to the system.

A processor replaces most of its state's columns every few polls and allocates hundreds of MB
of short-lived arrays per poll, so what the allocators keep after a free decides its resident
size as much as what is alive. Measured with 100,000 devices at steady state (1-minute readings,
3 h of event time; 2026-11-29): with 42-byte state rows, peak RSS 1,983 MB with the defaults and
1,514 MB with a 128 KiB mmap threshold, two arenas and no muzzy pages; with today's 32-byte rows,
1,369-1,391 MB at 128 KiB and 1,423 MB at 4 MiB (no muzzy pages, jemalloc's 500 ms purge; polls
of 20,000 records).

- glibc (numpy's arrays, Python's larger objects): a fixed mmap threshold of 4 MiB, so a larger
  array is unmapped when freed (by default the threshold grows with the largest array freed, up
  to 32 MiB, and such arrays then come from heaps that fragment and hardly shrink). Not lower: at
  128 KiB every poll's temporaries were mapped and page-faulted afresh, and the kernels ran at a
  third of their speed (``python -m bench kernels`` under the same settings, polls of 20,000
  records: 0.85M readings/s; 4 MiB: 2.18M; the defaults: 2.35M). At most two arenas, instead of
  up to 8 per core.
- jemalloc (polars' columns): freed pages are purged after 100 ms instead of 500 ms, and
  returned then, not first marked "lazily free" (``muzzy``), which the kernel leaves in the RSS
  until it needs the memory. This must be set before polars is imported (it reads
  ``_RJEM_MALLOC_CONF`` then).

:func:`give_back` (``malloc_trim``) after each poll's step returns the free pages inside glibc's
heaps: with it, RSS medians over the last quarter 841-843 MB instead of 950 MB, peaks 1,045-1,065
MB instead of 1,156 MB (100,000 devices, polls of 10,000 records); with the 100 ms purge too,
medians 794-798 MB, peaks 1,029-1,058 MB. No throughput change measured (324-334k readings/s in
those runs).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

MMAP_THRESHOLD = 4 * 2**20
ARENA_MAX = 2
JEMALLOC_CONF = "muzzy_decay_ms:0,dirty_decay_ms:100"
_M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
_M_ARENA_MAX = -8
_LIBC = (
    ctypes.CDLL(None)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    else None
)


def tune_allocators() -> list[str]:
    """Apply the settings above; returns what was set (a setting given by the environment wins,
    and nothing is done where the allocator is not there)."""
    done = []
    if "polars" not in sys.modules and "_RJEM_MALLOC_CONF" not in os.environ:
        os.environ["_RJEM_MALLOC_CONF"] = JEMALLOC_CONF
        done.append(f"jemalloc {JEMALLOC_CONF}")
    if _LIBC is not None:
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ and _LIBC.mallopt(
            _M_MMAP_THRESHOLD, MMAP_THRESHOLD
        ):
            done.append(f"glibc mmap_threshold {MMAP_THRESHOLD}")
        if "MALLOC_ARENA_MAX" not in os.environ and _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX):
            done.append(f"glibc arena_max {ARENA_MAX}")
    return done


def give_back() -> None:
    """Return the free pages inside glibc's heaps to the system (``malloc_trim``): freed arrays
    below the mmap threshold leave holes a heap cannot shrink past (once per poll)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
