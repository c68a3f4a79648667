"""torch.distributed glue for the train stage: torchrun + DistributedDataParallel, NCCL on GPUs, gloo on CPU.

`train.nproc_per_node > 1` makes `python -m stages.train` relaunch itself under torchrun (single node), so
`dvc repro` stays the one command. For several nodes, run torchrun yourself with its rendezvous flags
(README, "Multi-GPU and multi-node"); a process started by torchrun is never relaunched.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch_under_torchrun(nproc: int, module: str) -> int:
    """Run `module` under torchrun with `nproc` local workers; returns the exit code of the group.

    torchrun's own failure report is a traceback of its agent: we keep the workers' stderr (which carries our
    one-line error) and replace the agent's report by a one-line summary.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "--log-dir", os.path.join(".scratch", "torchrun"), "--redirects", "0", "--tee", "0", "-m", module]
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    worker_errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    if proc.returncode == 0:
        return 0
    # the same error on every rank is shown once
    for line in dict.fromkeys(worker_errors):
        print(line, file=sys.stderr)
    if not worker_errors:
        sys.stderr.write(proc.stderr)
    print(f"error: distributed training with {nproc} processes failed (exit code {proc.returncode})",
          file=sys.stderr)
    return 2


def setup(device: torch.device) -> Dist:
    """Join the process group when started by torchrun; a plain process is rank 0 of 1."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist()
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def all_reduce_sum(tensor: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def all_agree(ok: bool, d: Dist) -> bool:
    """True only when every rank says ok: lets all ranks stop together instead of leaving one to hang."""
    if d.world == 1:
        return ok
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    flag = torch.tensor([0 if ok else 1], dtype=torch.long, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return int(flag) == 0


def cleanup(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
