"""The train and evaluate stage processes share one malloc arena between their threads (rewardkit.allocator)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from rewardkit.allocator import bound_malloc_arenas

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# after importing a stage module (what `python -m stages.<stage>` runs first), threads that allocate; then glibc's
# own count
COUNT_ARENAS = """
import ctypes, sys, threading
{setup}
together = threading.Barrier(4)
def work():  # all four alive at once, so none takes over an arena another left
    blocks = [bytearray(64 * 1024) for _ in range(64)]
    together.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def arenas_after(setup: str, env: dict[str, str]) -> int:
    result = subprocess.run([sys.executable, "-c", COUNT_ARENAS.format(setup=setup)], capture_output=True,
                            text=True, check=True, env=env)
    return sum(line.startswith("Arena ") for line in result.stderr.splitlines())


@glibc
def test_the_scoring_stages_bound_arenas_before_any_thread_allocates():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert arenas_after("", env) > 1  # the default: an arena per allocating thread
    assert arenas_after("import stages.tokenize", env) > 1  # the tokenizer's threads keep theirs
    assert arenas_after("import stages.train", env) == 1
    assert arenas_after("import stages.evaluate", env) == 1


@glibc
def test_a_value_the_user_set_wins(monkeypatch):
    env = {**os.environ, "MALLOC_ARENA_MAX": "3"}
    assert arenas_after("import stages.train", env) == 3
    monkeypatch.setenv("MALLOC_ARENA_MAX", "3")
    assert bound_malloc_arenas() is False
