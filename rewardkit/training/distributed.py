"""torch.distributed for training: the process group under torchrun (NCCL on GPUs, gloo on CPU), this process's
place in it (`Ranks`), and the few collectives the training loop needs. The launcher is
`rewardkit.training.launcher`."""
from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rewardkit.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process in the job: its global rank, the number of processes, its rank on this node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def exit_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when its torchrun agent dies.

    torchrun starts each worker in a session of its own, so a `kill -9` of the launcher, or of the process group
    of `dvc repro`, would otherwise leave the workers training on, orphaned, and one of them writing outputs.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the agent died before we asked
        os._exit(1)


LOST_PEER = ("lost contact with another training process, which stopped first; its own error, or the launcher's "
             "report of it, says why")


def lost_peer(error: BaseException) -> bool:
    """Whether a collective failed because another rank went away (gloo sees its connection reset).

    Every survivor would otherwise print a long traceback about sockets that hides the one failure that matters.
    """
    return isinstance(error, dist.DistError) or "gloo/transport" in str(error)


def setup(device: torch.device) -> Ranks:
    """Join the process group when started by torchrun; a plain process is rank 0 of 1."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Ranks()
    exit_with_parent()
    # torchrun runs workers with `python -u`, where print() writes the text and the newline separately, so the
    # lines of several ranks interleave on the shared stderr; whole-line writes keep them intact (the error line is
    # written whole in any case: rewardkit.errors.say_error).
    sys.stderr.reconfigure(line_buffering=True, write_through=False)
    local_rank = int(os.environ["LOCAL_RANK"])
    gpu = torch.device("cuda", local_rank) if device.type == "cuda" else None
    if gpu is not None:
        torch.cuda.set_device(gpu)
    try:
        # device_id: NCCL knows each rank's GPU from the start (barrier() would otherwise guess it, with a warning)
        dist.init_process_group("nccl" if gpu is not None else "gloo", device_id=gpu)
        # gloo's init returns on one rank before the others have connected to it; without this barrier a rank
        # that then fails on bad input and exits would break the others' connecting, with a traceback each
        dist.barrier()
    except RuntimeError as e:
        if lost_peer(e):
            raise UserError(LOST_PEER) from None
        raise
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank)


def all_reduce(tensor: torch.Tensor, ranks: Ranks, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """`op` over ranks. A CPU tensor travels through this rank's GPU under NCCL, which reduces CUDA tensors only."""
    if ranks.world == 1:
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type == "cpu":
        return all_reduce(tensor.cuda(), ranks, op).cpu()
    dist.all_reduce(tensor, op=op)
    return tensor


def all_reduce_sum(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    return all_reduce(tensor, ranks, dist.ReduceOp.SUM)


def same_on_all_ranks(value: int, ranks: Ranks) -> bool:
    """Whether every rank holds the same `value` (max == min)."""
    extremes = all_reduce(torch.tensor([value, -value], dtype=torch.float64), ranks, dist.ReduceOp.MAX)
    return extremes[0].item() == -extremes[1].item()


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


def cleanup(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
