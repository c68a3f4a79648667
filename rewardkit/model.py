"""The reward model: a Hugging Face sequence classifier with one label, pooled by cls or mean, and loading it."""
from __future__ import annotations

import os

import torch
from torch import nn

from rewardkit import fast_deberta
from rewardkit.errors import UserError


class RewardModel(nn.Module):
    """r(x) for a batch of encoded sequences: (N, T) ids and mask -> (N,) rewards.

    pooling "cls": the standard sequence-classification head (what `AutoModelForSequenceClassification` computes).
    pooling "mean": masked mean of the last hidden states fed through the same head (DeBERTa's pooler+classifier).
    DeBERTa-v3 models run `rewardkit.fast_deberta` (same weights and math, no work on padding) on right-padded
    batches outside torch.compile; `fast=False` or any other model runs transformers' own forward.
    """

    def __init__(self, hf_model: nn.Module, pooling: str, fast: bool = True):
        super().__init__()
        if pooling == "mean" and not (hasattr(hf_model, "pooler") and hasattr(hf_model, "classifier")):
            raise UserError(f"model.pooling=mean needs a DeBERTa-style head (pooler + classifier); "
                            f"{type(hf_model).__name__} has none: use model.pooling=cls")
        self.hf = hf_model
        self.pooling = pooling
        self.fast = fast and fast_deberta.supports(hf_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # compiled graphs keep transformers' static-shape forward (fast_deberta's packing is data-dependent)
        if self.fast and not torch.compiler.is_compiling() and fast_deberta.right_padded(attention_mask):
            return fast_deberta.rewards(self.hf, input_ids, attention_mask, self.pooling)
        if self.pooling == "cls":
            return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        hidden = self.hf.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (N, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (N, H)
        return self.hf.classifier(self.hf.pooler(mean.unsqueeze(1)))[:, 0]  # the pooler reads position 0


def disable_dropout(model: nn.Module) -> None:
    """Reward models train without dropout (as TRL's RewardTrainer does by default): scores then do not depend
    on train/eval mode, and padding or batch composition cannot change them."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def load_hf_classifier(name_or_dir: str):
    """AutoModelForSequenceClassification(num_labels=1) and AutoTokenizer, with errors that say what to do."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own tqdm bars are the ones worth reading in `dvc repro` logs
    if os.path.isdir(name_or_dir) and not os.path.isfile(os.path.join(name_or_dir, "config.json")):
        raise UserError(f"model directory {name_or_dir} has no config.json: point model.name at a directory "
                        "written by save_pretrained (config.json, weights and tokenizer files)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
        model = AutoModelForSequenceClassification.from_pretrained(name_or_dir, num_labels=1)
    except OSError as e:
        raise UserError(f"could not load model {name_or_dir!r}: {str(e).splitlines()[0]} -- without network use "
                        "model.name=scratch-tiny (offline) or a local directory with the weights") from None
    if model.config.num_labels != 1:
        raise UserError(f"{name_or_dir} has a {model.config.num_labels}-label head; a reward model needs num_labels=1")
    if tokenizer.pad_token_id is None:
        raise UserError(f"tokenizer of {name_or_dir} has no pad token; set one in its tokenizer_config.json")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_base(name_or_dir: str, pooling: str, seed: int) -> tuple[RewardModel, object]:
    """The base to fine-tune, as (RewardModel, tokenizer); a new head is initialised from `seed`."""
    torch.manual_seed(seed)
    model, tokenizer = load_hf_classifier(name_or_dir)
    disable_dropout(model)
    return RewardModel(model, pooling), tokenizer
