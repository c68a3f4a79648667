"""train.strategy=fsdp loads the base once: rank 0 reads the full model on the CPU, the other ranks build the same
architecture on the meta device (no memory), `fully_shard` shards both, and rank 0's full state dict is broadcast
into every rank's shards (`set_model_state_dict(..., full_state_dict=True, broadcast_from_rank0=True)`). A rank
other than 0 thus never holds more than its shards of the weights, where every rank used to load all of them.

Buffers outside the state dict (non-persistent: rotary `inv_freq`, DeBERTa's `position_ids`) are never broadcast:
the empty model builds them on the CPU as the model's `__init__` computes them (accelerate's
`init_empty_weights(include_buffers=False)`: parameters on meta, buffers real), which is what rank 0's load holds.
Rank 0's CPU random state is broadcast too, so whatever draws random numbers next (LoRA dropout) draws on every
rank what it drew when every rank loaded the same model.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

from rewardkit.encoding.tokenizers import check_base_dir, not_loadable, quiet_transformers
from rewardkit.modeling.model import RewardModel, disable_dropout
from rewardkit.training import fsdp
from rewardkit.training.distributed import Ranks
from rewardkit.training.memory import release_freed_memory


def empty_classifier(name_or_dir: str, tokenizer) -> nn.Module:
    """The architecture `rewardkit.modeling.loading.load_classifier` loads from `name_or_dir`, built from its config
    with the parameters on the meta device and the buffers computed on the CPU (same dtype, same resized
    embeddings, same pad id): what rank 0's weights are broadcast into."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForSequenceClassification

    check_base_dir(name_or_dir)
    try:
        config = AutoConfig.from_pretrained(name_or_dir, num_labels=1)
    except OSError as e:
        raise not_loadable(name_or_dir, e) from None
    with quiet_transformers(), init_empty_weights(include_buffers=False):
        model = AutoModelForSequenceClassification.from_config(config, dtype=config.dtype or torch.float32)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # values come from rank 0: no mean init
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def empty_base(name_or_dir: str, pooling: str, tokenizer) -> RewardModel:
    """`rewardkit.modeling.model.load_base`'s model without its weights (parameters on meta)."""
    hf = empty_classifier(name_or_dir, tokenizer)
    disable_dropout(hf)
    return RewardModel(hf, pooling)


def is_empty(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def shard_from_rank0(model: RewardModel, device: torch.device, ranks: Ranks, bf16: bool) -> RewardModel:
    """Shard `model` as `rewardkit.training.fsdp.shard` does and fill every rank's shards from rank 0's weights (a
    collective): rank 0 holds the loaded model, the others `empty_base`'s. Rank 0's CPU random state follows.
    Every parameter and persistent buffer must be filled: a key missing on either side stops (strict)."""
    full = dict(model.state_dict()) if ranks.is_main else {}  # rank 0's full tensors, kept past the sharding
    fsdp.shard(model, device, ranks, bf16)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True)
    set_model_state_dict(model, full, options=options)
    del full
    unset = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if unset:
        raise RuntimeError(f"filling the sharded model from rank 0 left {', '.join(unset[:5])} on the meta device")
    state = [torch.get_rng_state()]
    dist.broadcast_object_list(state, src=0)
    torch.set_rng_state(state[0])
    release_freed_memory(device)  # rank 0's full copy, now that every shard is filled
    return model
