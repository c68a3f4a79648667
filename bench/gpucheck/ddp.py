"""Check 5: two processes against one, step by step. With two or more GPUs visible (or `--device cpu`, where gloo
stands in for NCCL) torchrun starts 2 workers that run the train stage's loop under DistributedDataParallel
(NCCL on CUDA, `device_ids` from the local rank) with 2 accumulation steps, so `no_sync` skips the all-reduce of
the first micro-step; one process here runs the same global batches without accumulation. Same global-batch
semantics: the losses of every step must agree within TOL (fp32: only the order of the
sums differs) and the final weights within WEIGHT_TOL (the learning rate: Adam moves a weight by about lr per
step whatever its gradient's size, so a last-bit difference in a near-zero gradient can move it by up to that;
a missing or doubled all-reduce moves the losses by far more than TOL). On one GPU: skipped.

    torchrun --nproc-per-node 2 -m bench.gpucheck.ddp MODEL STORE OUT_FILE DEVICE BATCH STEPS MAX_LENGTH
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from bench.gpucheck.common import Row, Setup, base, child, config, python, state_difference, train
from rewardkit.encoding.store import TokenStore
from rewardkit.training import distributed
from rewardkit.training.loop import optimize

TOL = 1e-5
WEIGHT_TOL = 1e-4  # = the check's lr (common.config)


def gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run(setup: Setup, timeout: float) -> Row:
    name = "DDP, 2 processes vs 1"
    if setup.device.type == "cuda" and gpus() < 2:
        return Row(name, f"skipped: {gpus()} GPU", notes="needs 2 GPUs (NCCL all-reduce, device_ids, no_sync)")
    with tempfile.TemporaryDirectory() as work:
        saved = Path(work) / "rank0.pt"
        proc = child("ddp: 2 processes", [*python(), "-m", "torch.distributed.run", "--standalone",
                                          "--nproc-per-node", "2", "-m", "bench.gpucheck.ddp", str(setup.model),
                                          str(setup.pairs.dir), str(saved), setup.device.type, str(setup.batch),
                                          str(setup.steps), str(setup.max_length)], setup, timeout,
                     env={"OMP_NUM_THREADS": "1"})
        if not proc["ok"]:
            return Row(name, "FAIL", notes=proc.get("error", ""))
        curve, model, _ = train(setup, Path(work) / "one")
        two = base(setup)[0]
        two.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
    losses = [r["loss"] for r in curve]
    loss_gap = max(abs(a - b) for a, b in zip(losses, proc["losses"])) if len(losses) == len(proc["losses"]) \
        else float("inf")
    weight_gap = state_difference(model, two)
    return Row.judged(name, loss_gap <= TOL and weight_gap <= WEIGHT_TOL,
                      f"{proc['backend']}: losses max |diff| {loss_gap:.1e} over {len(losses)} steps; weights "
                      f"{weight_gap:.1e}", f"losses <= {TOL:g}, weights <= {WEIGHT_TOL:g}",
                      "2 ranks x 2 accumulation steps (no_sync) vs 1 process",
                      loss_gap=loss_gap, weight_gap=weight_gap, backend=proc["backend"])


def worker(argv: list[str]) -> None:
    """One torchrun rank: the loop under DDP with 2 accumulation steps; rank 0 saves its weights and prints the
    curve."""
    model_dir, store, out_file, device_name, batch, steps, max_length = argv
    device = torch.device(device_name)
    ranks = distributed.setup(device)
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
    setup = Setup(device, True, Path(model_dir), TokenStore(Path(store)), None, Path(), Path(), Path(), int(batch),
                  int(steps), int(max_length))
    try:
        model, tokenizer = base(setup)
        with tempfile.TemporaryDirectory() as ckpt:
            curve = optimize(model, setup.pairs, config(setup, grad_accum_steps=2), device, ranks,
                             tokenizer.pad_token_id, Path(ckpt))
        if ranks.is_main:
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out_file)
            print(json.dumps({"losses": [r["loss"] for r in curve], "world": ranks.world,
                              "backend": torch.distributed.get_backend()}))
    finally:
        distributed.cleanup(ranks)


if __name__ == "__main__":
    worker(sys.argv[1:])
