"""train.strategy=fsdp: PyTorch's FSDP2 (`fully_shard`) shards parameters, gradients and AdamW state over the
processes, one unit per transformer block, then the root (embeddings and head); each rank holds 1/world of them
and all-gathers a unit's weights only while it runs (forward, and again in backward).

Same global-batch semantics as DDP: FSDP's reduce-scatter averages the gradients over ranks as DDP's all-reduce
does, so the loop's per-pair weights give the exact mean over the global batch either way.
train.precision=bf16 gets FSDP's mixed-precision policy: bf16 weights for compute, fp32 gradient reduction, fp32
master weights (the score head stays fp32, a unit of its own). The fast forwards (rewardkit.modeling.fast) call
their layers through `ops.layer_step`, registered here as each unit's second forward method, so their weights are
gathered too.

At the end the full model is gathered on rank 0 (`gather_plain`: `get_model_state_dict(full_state_dict=True,
cpu_offload=True)`) into a plain, unsharded copy, which is scored and saved as with DDP. Checkpoints:
rewardkit.training.sharded_checkpoint.
"""
from __future__ import annotations

import contextlib
from types import MethodType
from typing import Callable

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from rewardkit.errors import UserError
from rewardkit.modeling.fast.ops import LAYER_STEP, run_step
from rewardkit.modeling.model import RewardModel, score_head
from rewardkit.training.distributed import Ranks
from rewardkit.training.memory import release_freed_memory


def check_world(strategy: str, world: int) -> None:
    """fsdp shards over processes: on one there is nothing to shard over, and it would only add copies."""
    if strategy == "fsdp" and world < 2:
        raise UserError("train.strategy=fsdp shards the model over several processes but this run has one: set "
                        "train.nproc_per_node to 2 or more (or run it under torchrun), or use train.strategy=ddp")


def transformer_blocks(hf_model: nn.Module) -> list[nn.Module]:
    """The repeated layers of a transformers model, one FSDP unit each: the modules transformers marks as
    checkpointable layers (every encoder and decoder layer of the families it ships), else those of the classes
    its `_no_split_modules` names (what accelerate keeps whole)."""
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
    """Shard `model` (on `device`) in place over all ranks: each transformer block a unit, then the root; `bf16`
    (train.precision): the bf16 policy, the score head a unit of its own kept in fp32 (rewardkit.modeling.model's
    FP32Head: rewards are not rounded to bf16). Build the optimizer after this: the parameters become DTensors."""
    mesh = init_device_mesh(device.type, (ranks.world,))
    policy = mixed_precision(bf16)
    blocks = transformer_blocks(model.hf)
    if not blocks:
        raise UserError(f"train.strategy=fsdp: found no transformer layers to shard in {type(model.hf).__name__}; "
                        "use train.strategy=ddp")
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
        # the fast forwards run a block through this method, not block.forward: FSDP must gather around it too
        setattr(block, LAYER_STEP, MethodType(run_step, block))
        register_fsdp_forward_method(block, LAYER_STEP)
    head = score_head(model.hf)
    if bf16 and head is not None:
        fully_shard(head, mesh=mesh, mp_policy=mixed_precision(False))
    fully_shard(model, mesh=mesh, mp_policy=policy)
    release_freed_memory(device)  # the full weights each rank loaded, now replaced by its shards
    return model


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def no_sync(model: nn.Module):
    """A micro-step whose gradients are accumulated, not yet reduced: DDP's `no_sync()`, or FSDP's counterpart."""
    return no_gradient_sync(model) if is_sharded(model) else model.no_sync()


@contextlib.contextmanager
def no_gradient_sync(model: FSDPModule):
    """FSDP's counterpart of DDP's `no_sync()`: gradients accumulate, unreduced, until the last micro-step."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


@torch.no_grad()
def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` in its two public steps, the norm taken over every rank's shards (a DTensor
    norm is a partial one until reduced; torchtitan does the same)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
    return total


def gather_plain(model: RewardModel, ranks: Ranks, skeleton: Callable[[], tuple[RewardModel, object]]):
    """The full model gathered on rank 0 (a collective: every rank calls it). Rank 0 gets (a plain unsharded copy
    on the CPU, what `skeleton` returned beside it); the others get (None, None). `skeleton()` builds the same
    architecture on the meta device (no memory), LoRA layers included, which the gathered weights then fill."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(model, options=options)  # on rank 0 only; the others get {}
    if not ranks.is_main:
        return None, None
    plain, extra = skeleton()
    plain.load_state_dict(full, assign=True)
    # buffers outside the state dict (non-persistent: position ids, rotary frequencies) are not sharded by FSDP:
    # rank 0's own are the full ones
    for name, buffer in model.named_buffers():
        owner, _, leaf = name.rpartition(".")
        target = plain.get_submodule(owner)
        if getattr(target, leaf).is_meta:
            setattr(target, leaf, buffer.detach().to("cpu", copy=True))
    still_meta = [n for n, t in [*plain.named_parameters(), *plain.named_buffers()] if t.is_meta]
    if still_meta:
        raise RuntimeError(f"gathering the sharded model left {', '.join(still_meta[:5])} unset")
    return plain, extra
