"""The train and evaluate stage processes share one malloc arena between their threads, and the CPU scoring passes
hand the heap their batches freed back to the system (rewardkit.allocator)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch

from rewardkit import allocator
from rewardkit.allocator import bound_malloc_arenas
from rewardkit.modeling import inference

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


def test_heap_bound_trims_only_after_the_heap_grew_past_the_slack(monkeypatch):
    readings = iter([100, 150, 231, 120, 200, 221, 260])  # MB: start, then before (and after) each check's trim
    trims = []
    monkeypatch.setattr(allocator, "_glibc", lambda: object())
    monkeypatch.setattr(allocator, "anonymous_resident_bytes", lambda: next(readings) << 20)
    monkeypatch.setattr(allocator, "return_freed_heap", lambda: trims.append(1) or True)
    bound = allocator.HeapBound(slack=100 << 20)
    bound.check()  # 150: grew 50 of 100
    assert not trims
    bound.check()  # 231: past the bound -> trimmed, the mark is what is left (120)
    assert trims == [1] and bound.mark == 120 << 20
    bound.check()  # 200 <= 120 + 100
    assert trims == [1]
    bound.check()  # 221 > 220
    assert trims == [1, 1] and bound.trims == 2 and bound.mark == 260 << 20


def test_heap_bound_does_nothing_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    monkeypatch.setattr(allocator, "return_freed_heap", lambda: pytest.fail("trimmed without glibc"))
    bound = allocator.HeapBound(slack=0)
    bound.check()
    assert bound.trims == 0


# blocks below glibc's mmap threshold (128 KB) come from the heap; a small block kept after each holds the freed
# ones in holes glibc cannot return by shrinking the heap's top
FRAGMENT = """
import sys
from rewardkit import allocator
bound = allocator.HeapBound(slack=64 << 20)
blocks, keep = [], []
for _ in range(2000):
    blocks.append(bytearray(100_000))
    keep.append(bytearray(1000))  # above pymalloc's 512 bytes: from the C heap, between the blocks
before = allocator.anonymous_resident_bytes()
del blocks
held = allocator.anonymous_resident_bytes()
bound.mark = allocator.anonymous_resident_bytes() - (65 << 20)  # as if the heap had grown past the slack
bound.check()
print((held - allocator.anonymous_resident_bytes()) >> 20, (before - held) >> 20, bound.trims)
"""


@glibc
def test_heap_bound_gives_freed_heap_back_to_the_system():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    result = subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True, check=True, env=env)
    returned, returned_by_free, trims = map(int, result.stdout.split())
    assert returned_by_free < 50  # glibc kept the ~190 MB freed in the holes...
    assert returned > 150 and trims == 1  # ...until the bound handed it back


def test_cpu_scoring_checks_the_heap_bound_after_every_batch(monkeypatch):
    checks = []

    class Recorder:
        def check(self):
            checks.append(1)

    monkeypatch.setattr(inference, "HEAP", Recorder())
    sequences = [[1] * n for n in range(1, 400)]
    model = lambda ids, mask, *rest: (ids * mask).sum(1).float()  # noqa: E731
    rewards = inference.score_sequences(model, sequences, 0, 8, torch.device("cpu"))
    assert rewards.tolist() == [float(len(s)) for s in sequences]
    assert len(checks) == len(inference.inference_batches([len(s) for s in sequences], 8, torch.device("cpu")))
