"""CPU proxies for the `cuda` branches outside modeling/devices.py (no GPU has run them): the process-group set-up,
NCCL's host-tensor reduction, DDP's device_ids, the fused optimizer, the worker's device and the GPU memory the loader
fits weights into. torch's CUDA and collective entry points are replaced by recorders, so each test fails if its
branch picks the wrong backend, device or tensor."""
from __future__ import annotations

import io

import pytest
import torch
import torch.distributed as dist

from rewardkit.config import TrainConfig
from rewardkit.modeling import fitting
from rewardkit.training import distributed, job, loop
from rewardkit.training.distributed import Ranks


@pytest.fixture
def torchrun_worker(monkeypatch):
    """Environment of torchrun's worker 1 of 2 on its node; collectives recorded, not run."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "exit_with_parent", lambda: None)
    monkeypatch.setattr("sys.stderr", io.TextIOWrapper(io.BytesIO()))
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, device_id=None: calls.append(
        ("init", backend, device_id)))
    monkeypatch.setattr(dist, "barrier", lambda: calls.append(("barrier",)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    return calls


def test_a_gpu_worker_binds_its_local_gpu_before_joining_nccl(torchrun_worker):
    ranks = distributed.setup(torch.device("cuda"))
    gpu = torch.device("cuda", 1)
    assert torchrun_worker == [("set_device", gpu), ("init", "nccl", gpu), ("barrier",)]
    assert ranks == Ranks(rank=1, world=2, local_rank=1)


def test_a_cpu_worker_joins_gloo_without_a_device(torchrun_worker):
    distributed.setup(torch.device("cpu"))
    assert torchrun_worker == [("init", "gloo", None), ("barrier",)]


class OnGpu:
    """A tensor as `.cuda()` returns it: a copy on another device, `.cpu()` brings a copy back."""

    device = torch.device("cuda", 0)

    def __init__(self, data: torch.Tensor):
        self.data = data.clone()

    def cpu(self) -> torch.Tensor:
        return self.data.clone()


def test_nccl_reduces_a_host_tensor_on_the_gpu_and_returns_the_sum_on_the_host(monkeypatch):
    """NCCL reduces CUDA tensors only: the host tensor travels, and the caller gets the reduced copy back on the
    host — returning the host tensor itself would keep this rank's own value."""
    sent = []
    monkeypatch.setattr(dist, "get_backend", lambda: "nccl")
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self: OnGpu(self))
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None: (sent.append(t), t.data.mul_(2)))
    host = torch.tensor([1.0, 3.0])
    out = distributed.all_reduce(host, Ranks(0, 2, 0))
    assert isinstance(sent[0], OnGpu) and out.device.type == "cpu" and out.tolist() == [2.0, 6.0]


@pytest.mark.parametrize("device, expected", [(torch.device("cuda", 1), [1]), (torch.device("cpu"), None)])
def test_ddp_names_the_workers_gpu_and_no_device_on_the_cpu(monkeypatch, device, expected):
    seen = {}

    def ddp(model, device_ids=None):
        seen["device_ids"] = device_ids
        return model

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", ddp)
    model = torch.nn.Linear(2, 1)
    ddp, forward = loop.wrap_model(model, TrainConfig(), device, Ranks(1, 2, 1))
    assert seen == {"device_ids": expected} and ddp is model and forward is model


@pytest.mark.parametrize("device, fused", [("cuda", True), ("cpu", True), ("meta", False)])
def test_adamw_is_fused_where_torch_has_the_kernel(monkeypatch, device, fused):
    seen = {}
    real = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda groups, **kw: seen.update(kw) or real(groups, lr=kw["lr"]))
    loop.make_optimizer(torch.nn.Linear(2, 1), TrainConfig(), torch.device(device))
    assert seen["fused"] is fused


def test_a_gpu_worker_trains_on_its_local_gpu(monkeypatch, tmp_path):
    """A torchrun worker with train.device cuda trains on cuda:LOCAL_RANK, not on cuda (= cuda:0 for every rank)."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    seen = {}
    monkeypatch.setattr(job, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(job, "enable_tf32", lambda device: None)
    monkeypatch.setattr(job.fsdp, "check_world", lambda strategy, world: None)
    monkeypatch.setattr(job.distributed, "setup", lambda device: Ranks(1, 2, 1))
    monkeypatch.setattr(job.distributed, "cleanup", lambda ranks: None)
    monkeypatch.setattr(job, "train_reward_model", lambda paths, model_cfg, cfg, device, ranks: seen.update(
        device=device))
    assert job.train_stage(None, None, TrainConfig(device="cuda"), "stages.train", []) == 0
    assert seen["device"] == torch.device("cuda", 1)


def test_the_room_for_weights_on_a_gpu_is_that_gpus_free_memory(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: asked.append(device) or (3 << 30, 80 << 30))
    assert fitting.free_bytes(torch.device("cuda", 1)) == 3 << 30 and asked == [torch.device("cuda", 1)]
