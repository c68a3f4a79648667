"""The machine: a one-line description, its load, the fp32 matmul peak through torch, and child processes timed
with their own peak RSS."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def cpu_model() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or "unknown CPU")


def versions(*packages: str) -> str:
    def one(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} (not installed)"
    return ", ".join(one(p) for p in packages)


def machine() -> str:
    return (f"{os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
            + versions("torch", "transformers", "trl", "accelerate", "datasets"))


def load_1min() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(limit: float, max_wait_s: float) -> float:
    """Sleep in 60 s steps while the 1-minute load is above `limit`, for at most `max_wait_s`; returns the load."""
    deadline = time.monotonic() + max_wait_s
    while load_1min() > limit and time.monotonic() < deadline:
        print(f"load average {load_1min():.2f} > {limit}: waiting 60 s for a quieter machine", flush=True)
        time.sleep(60)
    return load_1min()


def matmul_peak_gflops(n: int = 2048, threads: int = 2, repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOP/s of one n x n fp32 matmul (2 n^3 flops) on `threads` intra-op threads."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # first call: MKL/oneDNN set-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(saved)
    return 2 * n ** 3 / best / 1e9


def run_child(cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> tuple[dict, float]:
    """Run `cmd` with stdout+stderr in `log`; return (its last JSON line, its own peak RSS in MB).

    os.wait4 gives the rusage of exactly this child (ru_maxrss in KiB on Linux), so each trainer's peak RSS is
    its own, measured by the kernel rather than sampled.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(encoding="utf-8", errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); last lines of {log}:\n"
                           + "\n".join(text.splitlines()[-15:]))
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON result; see {log}")
    return json.loads(lines[-1]), usage.ru_maxrss / 1024
