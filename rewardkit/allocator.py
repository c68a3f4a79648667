"""Bound glibc's malloc arenas in the train and evaluate stages: each thread that allocates gets an arena of its
own (up to 8 per core), and each arena keeps the high-water mark of the tensors its threads freed. The CPU scoring
threads (rewardkit.modeling.inference) allocate batch-sized activations of ever new shapes, so with an arena each
their freed memory piles up side by side; one shared arena reuses it. The tokenizer's threads, which make many small
allocations, slow down on one arena, so the tokenize stage keeps glibc's default (bench/RESULTS.md, 2026-12-02: peak
RSS and tokenize time, both ways). Called first thing by those stage modules, before torch starts a thread. The same
as `MALLOC_ARENA_MAX=1`; a value the user set in that variable wins; not glibc: nothing done.

Even one arena keeps what such a loop frees: blocks of each new size are carved from the holes older ones left, and
the heap grows by fragments no later block fits (a scoring pass over 40,000 sequences grew it by ~1 GB with ~170 MB
in use). `HeapBound` hands the freed pages back whenever the process's heap has grown by a bound since it last did."""
from __future__ import annotations

import ctypes
import os
import platform
import threading
from functools import cache

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 1
RETAINED_SLACK = 128 << 20  # bytes of heap growth after which HeapBound hands the freed pages back


def bound_malloc_arenas(arenas: int = ARENAS) -> bool:
    """mallopt(M_ARENA_MAX, arenas) in this process, before its worker threads start; True when applied."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))  # the process's own libc
    except (OSError, AttributeError):
        return False


@cache
def _glibc():
    """The process's glibc (ctypes), or None under another C library (platform.libc_ver reads the executable: once)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def return_freed_heap() -> bool:
    """malloc_trim(0): hand the heap pages glibc keeps after frees back to the system; True when some were returned."""
    libc = _glibc()
    if libc is None:
        return False  # other C libraries return large frees on their own
    try:
        return bool(libc.malloc_trim(0))
    except AttributeError:
        return False


def anonymous_resident_bytes() -> int | None:
    """The process's resident memory less its file-backed pages (heap, stacks: what frees can give back), from
    Linux's /proc/self/statm; None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
    except OSError:
        return None
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")


class HeapBound:
    """Call `check()` between the steps of a long loop that allocates and frees blocks of ever new sizes (the CPU
    scoring batches): when the heap has grown by more than `slack` bytes since the last trim (or the start), the
    freed pages go back to the system (`return_freed_heap`). The pages in use are untouched, so results are too.
    One instance may serve a whole process (a server's requests): the mark carries over from call to call."""

    def __init__(self, slack: int = RETAINED_SLACK):
        self.slack, self.trims = slack, 0
        self.mark = anonymous_resident_bytes() if _glibc() is not None else None
        self._lock = threading.Lock()  # checked from several scoring threads at once

    def check(self) -> None:
        if self.mark is None:  # not glibc, or no /proc: nothing to measure or give back
            return
        with self._lock:
            if anonymous_resident_bytes() > self.mark + self.slack:
                self.trims += return_freed_heap()
                self.mark = anonymous_resident_bytes()
