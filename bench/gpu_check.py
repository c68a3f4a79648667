"""GPU readiness in one command, for the day a GPU is lent (what each check compares and its tolerance: the
docstrings of bench/gpucheck/<check>.py):

    bash bench/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR]

1. precision: bf16 autocast training vs fp32 training on the same batches (losses, final rewards);
2. forward: our fast forward vs transformers' forward of the same weights (rewards and gradients; fp32, bf16);
3. speed: ours vs TRL's RewardTrainer (pairs/s, tokens/s, MFU, peak memory; "skipped" without TRL);
4. resume: SIGKILL and SIGTERM mid-run, resume, compare with an uninterrupted run;
5. ddp: 2 torchrun processes (NCCL; gloo with --device cpu) vs 1, step by step ("skipped: 1 GPU" on one GPU);
6. fsdp_lora: the fsdp + LoRA + activation checkpointing step (bench/gpu_fsdp.py).
cuda (default): deberta-v3-small dims (random init, tokenizer trained on the bench conversations), max length 512,
batch 32 pairs; `--device cpu --quick`: scratch-tiny dims, a few steps, fp32 and the CPU's bf16 autocast standing
in for CUDA's (tests/unit/test_gpu_check_cpu.py). A failing check is a FAIL row, the others still run. The machine's
facts and one table (check, result, figure, tolerance, notes) go to stdout and, with the log of every child
process, to DIR (default $OUT, else bench/out/gpu_check); exit 1 when a row FAILs.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path

import torch

from bench import system, workloads
from bench.gpucheck import ddp, forward, fsdp_lora, precision, resume, speed
from bench.gpucheck.common import ROOT, Row, Setup
from rewardkit.encoding.tokenization import store_rows
from rewardkit.modeling.devices import native_bf16

# quick: (workload, batch pairs, steps, max length, held-out pairs, child time limit s)
SETTINGS = {False: ("small", 32, 20, 512, 256, 240), True: ("tiny", 4, 4, 128, 16, 120)}


def machine_facts(device: torch.device) -> list[str]:
    lines = [f"host: {system.machine()}"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines.append(f"device: {torch.cuda.device_count()} x {props.name}, compute capability {props.major}."
                     f"{props.minor}, {props.total_memory / 2 ** 30:.0f} GiB, CUDA {torch.version.cuda}, "
                     f"bf16 native: {native_bf16(device)}, NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}")
    else:
        lines.append(f"device: CPU ({system.cpu_model()}), bf16 native: {native_bf16(device)}, "
                     f"{torch.get_num_threads()} threads")
    return lines


def prepare(device: torch.device, quick: bool, out: Path) -> tuple[Setup, Path, int]:
    """The run's model directory and token stores (built once, under `out`), and the child time limit."""
    from transformers import AutoConfig

    from rewardkit.encoding.tokenizers import load_tokenizer

    name, batch, steps, max_length, held_out_pairs, limit = SETTINGS[quick]
    train, held_out = workloads.bench_data(*((60, 20) if quick else ()))
    model = workloads.model_dir(name, train)
    tokenizer, config = load_tokenizer(str(model)), AutoConfig.from_pretrained(model)
    work = out / "work"
    stores = {}
    for key, path, n, keep in (("train", train, batch * steps, False), ("held_out", held_out, held_out_pairs, True)):
        directory = work / key
        rows = workloads.read_jsonl(workloads.first_rows(path, n))
        stores[key] = store_rows(rows, directory, tokenizer, config, max_length, keep_identical=keep)
    setup = Setup(device, quick, model, stores["train"], stores["held_out"], train, held_out, out, batch, steps,
                  max_length)
    return setup, train, limit


def guarded(check: str, fn, *args) -> list[Row]:
    """The check's rows, or one FAIL row naming the exception (its traceback goes to the log)."""
    try:
        rows = fn(*args)
        return rows if isinstance(rows, list) else [rows]
    except Exception as e:  # noqa: BLE001 - a crashing check is a FAIL row, the others still run
        with open(args[0].log, "a", encoding="utf-8") as f:
            f.write(f"\n===== {check} raised\n{traceback.format_exc()}")
        return [Row(check, "FAIL", notes=f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")]


def run_checks(setup: Setup, train_rows: Path, limit: int) -> list[Row]:
    bf16 = setup.device.type == "cpu" or native_bf16(setup.device)  # the CPU's bf16 autocast: the CUDA proxy
    fast = "bf16" if setup.device.type == "cuda" and bf16 else "fp32"
    rows = guarded("bf16 vs fp32 training", precision.run, setup) if bf16 else \
        [Row("bf16 vs fp32 training", "skipped: no native bf16")]
    for p in ("fp32", "bf16") if bf16 else ("fp32",):
        rows += guarded(f"fast vs transformers forward, {p}", forward.run, setup, p)
    rows += guarded("ours vs TRL speed", speed.run, setup, fast, train_rows, limit)
    rows += guarded("kill -9 / SIGTERM and resume", resume.run, setup, limit)
    rows += guarded("DDP, 2 processes vs 1", ddp.run, setup, limit)
    rows += guarded("fsdp + LoRA", fsdp_lora.run, setup)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| check | result | figure | tolerance | notes |", "|---|---|---|---|---|"]
    lines += [f"| {r.check} | {r.status} | {r.figure} | {r.tolerance} | {r.notes} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="scratch-tiny dims, a few steps (the CPU test)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench" / "out" / "gpu_check"))
    a = parser.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "error: --device cuda: no CUDA device is visible (on a CPU machine: --device cpu --quick)\n")
    device = torch.device(a.device)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gpu_check.log").write_text("", encoding="utf-8")
    started = time.perf_counter()
    setup, train_rows, limit = prepare(device, a.quick, a.out)
    rows = run_checks(setup, train_rows, limit)
    text = "\n".join([*machine_facts(device), f"workload: {SETTINGS[a.quick][0]} dims, batch {setup.batch} pairs, "
                      f"{setup.steps} steps, max length {setup.max_length}", "", table(rows), "",
                      f"total {time.perf_counter() - started:.0f} s; every child's output: {setup.log}"])
    print(text)
    (a.out / "gpu_check.md").write_text(text + "\n", encoding="utf-8")
    (a.out / "gpu_check.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1, default=str),
                                          encoding="utf-8")
    return 1 if any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
