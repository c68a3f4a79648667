"""Check 6 (#25 item 8): the fsdp + LoRA + activation checkpointing step of bench/gpu_fsdp.py, in this process: a
sharded model's rewards equal an unsharded copy's, its loss falls over a few steps, and the gathered plain copy
scores as the sharded one (tolerances: bench/gpu_fsdp.py's docstring)."""
from __future__ import annotations

from bench import gpu_fsdp
from bench.gpucheck.common import Row, Setup


def run(setup: Setup) -> Row:
    steps = 4 if setup.quick else 6
    result = gpu_fsdp.report(str(setup.device), steps)
    parts = []
    for family, c in result["checks"].items():
        first, last = c["loss_first_last"]
        parts.append(f"{family}: rewards {'=' if c['rewards_match'] else '!='} unsharded, loss {first:.3f} -> "
                     f"{last:.3f}, gathered {'=' if c['gathered_matches'] else '!='} sharded")
    tol = {"fp32": "rewards 1e-5", "bf16": "rewards 2% of the largest"}[result["precision"]] + "; loss falls"
    memory = result["peak_gpu_memory_mb"]
    return Row.judged(f"fsdp + LoRA r=8 + checkpointing, {result['precision']}", result["ok"], "; ".join(parts), tol,
                      f"{steps} steps, 1 rank" + (f", peak GPU memory {memory:,.0f} MB" if memory else ""),
                      checks=result["checks"])
