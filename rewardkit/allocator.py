"""Bound glibc's malloc arenas in the train and evaluate stages: each thread that allocates gets an arena of its
own (up to 8 per core), and each arena keeps the high-water mark of the tensors its threads freed. The CPU scoring
threads (rewardkit.modeling.inference) allocate batch-sized activations of ever new shapes, so with an arena each
their freed memory piles up side by side; one shared arena reuses it. The tokenizer's threads, which make many small
allocations, slow down on one arena, so the tokenize stage keeps glibc's default (bench/RESULTS.md, 2026-12-02: peak
RSS and tokenize time, both ways). Called first thing by those stage modules, before torch starts a thread. The same
as `MALLOC_ARENA_MAX=1`; a value the user set in that variable wins; not glibc: nothing done."""
from __future__ import annotations

import ctypes
import os
import platform

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 1


def bound_malloc_arenas(arenas: int = ARENAS) -> bool:
    """mallopt(M_ARENA_MAX, arenas) in this process, before its worker threads start; True when applied."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))  # the process's own libc
    except (OSError, AttributeError):
        return False


def return_freed_heap() -> bool:
    """malloc_trim(0): hand the heap pages glibc keeps after frees back to the system; True when some were returned."""
    if platform.libc_ver()[0] != "glibc":
        return False  # other C libraries return large frees on their own
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
