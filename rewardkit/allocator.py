"""Bound glibc's malloc arenas in the stage processes: each thread that allocates gets an arena of its own (up to
8 per core), and each arena keeps the high-water mark of the tensors its threads freed. The CPU scoring threads
(rewardkit.inference) allocate batch-sized activations of ever new shapes, so with an arena each their freed
memory piles up side by side; one shared arena reuses it (bench/RESULTS.md, 2026-12-02: the train stage's peak
RSS). Called by `stages/__init__.py`, before torch is imported. The same as `MALLOC_ARENA_MAX=1`; a value the
user set in that variable wins (a many-core machine scoring on dozens of threads may prefer a few arenas);
not glibc: nothing is done."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 1


def bound_malloc_arenas(arenas: int = ARENAS) -> bool:
    """mallopt(M_ARENA_MAX, arenas) in this process, before its worker threads start; True when applied."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
