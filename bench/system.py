"""The machine: a one-line description, its load, matmul ceilings through torch, model FLOPs, and child processes
timed with their own peak RSS.

Two ceilings: the classic one (one 2048^2 fp32 matmul, 2 threads), kept for continuity with earlier runs, and the
one to steer by: the model's own token-wise matmuls (`layer_gemms`) at the workload's real rows per step, in the
thread layout our code runs them (training: one process, 2 intra-op threads; CPU scoring: one single-thread worker
per core on separate batches, all at once). Small hidden sizes make skinnier matmuls than 2048^2, and two
single-thread matmuls side by side are not one two-thread matmul, so the two ceilings differ.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def bf16_support() -> str:
    """What torch reports of this CPU's bf16 support, and the precision `auto` picks from it (devices.native_bf16)."""
    import torch

    from rewardkit.modeling.devices import cpu_bf16_features, resolve_precision

    cpu = torch.device("cpu")
    features = ", ".join(f"{name} {found}" for name, found in cpu_bf16_features().items())
    return (f"CPU bf16 ({cpu_model()}): torch capability {torch.backends.cpu.get_cpu_capability()}, torch.cpu "
            f"reports {features}: precision auto -> {resolve_precision('auto', cpu)}")


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


def layer_gemms(hidden: int, intermediate: int, rows: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of one encoder layer's token-wise matmuls x(M, K) . W(N, K)^T at `rows` tokens: q/k/v as one
    (H, 3H) matmul (as our fast paths run it), the attention output (H, H), the feed-forward (H, 4H) and (4H, H)."""
    return [(rows, hidden, 3 * hidden), (rows, hidden, hidden), (rows, hidden, intermediate),
            (rows, intermediate, hidden)]


def _gemm_ops(shapes: list[tuple[int, int, int]], backward: bool, dtype, device: str) -> list[tuple[float, object]]:
    """(flops, thunk) per matmul, in the layouts autograd runs a linear layer: forward x @ W^T; backward the input
    gradient g @ W (M, N, K) and the weight gradient g^T @ x (N, M, K)."""
    import torch

    ops = []
    for m, k, n in shapes:
        x, w, g = (torch.randn(*shape, dtype=dtype, device=device) for shape in ((m, k), (n, k), (m, n)))
        ops.append((2 * m * k * n, lambda x=x, w=w: x @ w.t()))
        if backward:
            ops += [(2 * m * n * k, lambda g=g, w=w: g @ w), (2 * n * m * k, lambda g=g, x=x: g.t() @ x)]
    return ops


def _best_seconds(op, repeats: int, device: str, inner: int = 20) -> float:
    """Best-of-`repeats` seconds of one op() call; on CUDA timed with events around `inner` back-to-back calls
    (one launch alone is too short to time)."""
    import torch

    op()  # first call: library set-up (MKL/oneDNN, cuBLAS handles and heuristics)
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                op()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / inner)
        else:
            start_s = time.perf_counter()
            op()
            best = min(best, time.perf_counter() - start_s)
    return best


def model_gemm_peak(shapes: list[tuple[int, int, int]], backward: bool, threads: int = 2, repeats: int = 5,
                    device: str = "cpu", dtype=None) -> float:
    """GFLOP/s of the matmuls `shapes` (and their backward ones) on one worker: total flops over the sum of each
    matmul's best time. CPU: fp32 on `threads` intra-op threads; CUDA: `dtype` (bf16 by default), events."""
    import torch

    dtype = dtype or (torch.float32 if device == "cpu" else torch.bfloat16)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ops = _gemm_ops(shapes, backward, dtype, device)
        total = sum(_best_seconds(op, repeats, device) for _, op in ops)
    finally:
        torch.set_num_threads(saved)
    return sum(f for f, _ in ops) / total / 1e9


def concurrent_gemm_peak(shapes: list[tuple[int, int, int]], workers: int = 2, repeats: int = 5, dtype=None) -> float:
    """GFLOP/s of `workers` single-thread workers running the forward matmuls `shapes` at the same time, each on
    its own tensors (the CPU scorer's layout): all workers' flops over the best-of-`repeats` wall time of a round
    (CPU, `dtype`: fp32 by default)."""
    import torch

    dtype = dtype or torch.float32
    start_line = threading.Barrier(workers)
    with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        ops = list(pool.map(lambda _: _gemm_ops(shapes, False, dtype, "cpu"), range(workers)))

        def one_round(i: int) -> None:
            start_line.wait()
            for _, op in ops[i]:
                op()

        list(pool.map(one_round, range(workers)))  # warm-up round
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(one_round, range(workers)))
            best = min(best, time.perf_counter() - start)
    return workers * sum(f for f, _ in ops[0]) / best / 1e9


def attention_flops(config, sq_tokens: int, backward: bool) -> float:
    """FLOPs of attention for sequences whose squared lengths sum to `sq_tokens` (sum of T^2): per layer and
    sequence 2 T^2 H for q.k^T, as much for each DeBERTa position term (c2p, p2c: one more H-wide dot product per
    score), and 2 T^2 H for probs.v; x3 with backward. (DeBERTa's position projections are per batch, not per
    token, and left out: well under 1% of a step.)"""
    positions = len(config.pos_att_type or []) if getattr(config, "relative_attention", False) else 0
    forward = (2 * (1 + positions) + 2) * config.hidden_size * config.num_hidden_layers * sq_tokens
    return forward * (3 if backward else 1)


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


def record(section: list[str]) -> None:
    """Append a dated results section (its lines) to bench/RESULTS.md."""
    results = Path(__file__).resolve().parent / "RESULTS.md"
    if not results.exists():
        results.write_text("# Benchmark results\n")
    with open(results, "a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(section))
