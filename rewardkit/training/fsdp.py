"""train.strategy=fsdp: PyTorch's FSDP2 (`fully_shard`) shards parameters, gradients and AdamW state over the
processes, one unit per transformer block, then the root (embeddings and head); each rank holds 1/world of them
between a unit's forward and backward, and all-gathers a unit's weights only while it runs.

A bf16 precision (rewardkit.modeling.devices) becomes FSDP's mixed-precision policy: bf16 weights for compute,
fp32 gradient reduction and fp32 master weights. The fast forwards (rewardkit.modeling.fast) call their layers
through `ops.layer_step`, registered here as each unit's second forward method, so their weights are gathered too.
The released model is gathered on rank 0 (`plain_copy`); checkpoints: rewardkit.training.dcp_checkpoint.
"""
from __future__ import annotations

from types import MethodType

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from rewardkit.modeling.fast.ops import LAYER_STEP, run_step
from rewardkit.modeling.model import RewardModel
from rewardkit.training.distributed import Ranks


def transformer_blocks(hf_model: nn.Module) -> list[nn.Module]:
    """The repeated layers of a transformers model, one FSDP unit each: the modules transformers marks as
    checkpointable layers (every encoder and decoder layer of the families it ships), else those of the classes
    its `_no_split_modules` names (what accelerate wraps)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    blocks = [m for m in hf_model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not blocks:
        names = set(getattr(hf_model, "_no_split_modules", None) or ())
        blocks = [m for m in hf_model.modules() if type(m).__name__ in names]
    return blocks


def mixed_precision(bf16: bool) -> MixedPrecisionPolicy:
    """bf16 compute with fp32 reduction (master weights stay fp32 in the sharded parameters), or fp32 throughout."""
    if not bf16:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard(model: RewardModel, device: torch.device, ranks: Ranks, bf16: bool) -> RewardModel:
    """Shard `model` in place over all ranks: each transformer block a unit, then the root. Returns it."""
    mesh = init_device_mesh(device.type, (ranks.world,))
    policy = mixed_precision(bf16)
    for block in transformer_blocks(model.hf):
        fully_shard(block, mesh=mesh, mp_policy=policy)
        # the fast forwards run a block through this method, not block.forward: FSDP must gather around it too
        setattr(block, LAYER_STEP, MethodType(run_step, block))
        register_fsdp_forward_method(block, LAYER_STEP)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


@torch.no_grad()
def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> float:
    """`torch.nn.utils.clip_grad_norm_` in its two public steps, with the norm over every rank's shards when the
    gradients are sharded (DTensors: their norm is a partial one until it is reduced)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
    return float(total)
