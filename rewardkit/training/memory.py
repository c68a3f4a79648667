"""What lets a base larger than the memory at hand train: activation checkpointing (train.gradient_checkpointing)
here; LoRA adapters in rewardkit.training.lora; sharding over processes in rewardkit.training.fsdp.

Activation checkpointing is transformers' own (`activation_checkpointing_enable`, non-reentrant
`torch.utils.checkpoint` around each layer). The fast forwards (rewardkit.modeling.fast) read the same per-layer flag
and function through `ops.run_step`, so a checkpointed base is checkpointed whichever forward runs.
"""
from __future__ import annotations

import gc

import torch

from rewardkit.allocator import return_freed_heap
from rewardkit.errors import UserError
from rewardkit.modeling.model import RewardModel

CHECKPOINT_KWARGS = {"use_reentrant": False}  # the non-reentrant variant: works with FSDP2 and frozen inputs


def enable_activation_checkpointing(model: RewardModel) -> None:
    """Checkpoint every layer of `model`'s transformers model in training (transformers' forward and the fast
    ones); a family transformers does not checkpoint stops with one line."""
    hf = model.hf
    if not getattr(hf, "supports_gradient_checkpointing", False):
        raise UserError(f"train.gradient_checkpointing: {type(hf).__name__} does not support activation "
                        "checkpointing in transformers; set train.gradient_checkpointing=false")
    enable = getattr(hf, "activation_checkpointing_enable", None)
    if enable is not None:  # newer transformers; gradient_checkpointing_enable is its deprecated alias
        enable(activation_checkpointing_kwargs=dict(CHECKPOINT_KWARGS))
    else:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(CHECKPOINT_KWARGS))


def release_freed_memory(device: torch.device) -> None:
    """Hand memory freed by Python and torch back to the system: after `fully_shard` has replaced each full weight
    by this rank's shard, the freed full copies would otherwise stay in the process (CUDA's caching allocator keeps
    them reserved; on the CPU glibc keeps the freed heap pages) and count against every rank as if unsharded."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        return_freed_heap()
