"""The reward model: a Hugging Face sequence classifier with one label, of any family (loading:
rewardkit.modeling.loading).

Encoders (DeBERTa, BERT, RoBERTa, ELECTRA, ModernBERT, ...) read a text pair; decoder-only classifiers (Llama,
Qwen2, ...) read prompt + response + EOS and transformers' head pools the last non-pad token. `input_template`
says which, from the config, and the tokenizer says where its special tokens go.
"""
from __future__ import annotations

from functools import cache

import torch
from torch import nn

from rewardkit.encoding.tokenizers import load_tokenizer
from rewardkit.errors import UserError
from rewardkit.modeling import packing
from rewardkit.modeling.devices import no_autocast
from rewardkit.modeling.fast import bert as fast_bert
from rewardkit.modeling.fast import deberta as fast_deberta
from rewardkit.modeling.loading import load_classifier


class RewardModel(nn.Module):
    """r(x) for a batch of encoded sequences: (N, T) ids and mask -> (N,) rewards.

    pooling "cls": the standard sequence-classification head (what `AutoModelForSequenceClassification` computes).
    pooling "mean": masked mean of the last hidden states fed through the same head (DeBERTa's pooler+classifier).
    DeBERTa-v3 models run `rewardkit.modeling.fast.deberta` and BERT, RoBERTa and ELECTRA classifiers with a cls head
    `rewardkit.modeling.fast.bert` (same weights and math, no work on padding) on right-padded batches outside
    torch.compile; `fast=False` or any other model runs transformers' own forward.
    Whatever precision the body runs in, the score head runs in fp32 (`head_in_fp32`): rewards are fp32 numbers.
    Causal decoders also take packed batches (`rewardkit.modeling.packing`: a prompt computed once for all its
    answers); `share_prefix` says whether the callers that build batches (`packing.batch_for`) pack for this model.
    """

    def __init__(self, hf_model: nn.Module, pooling: str, fast: bool = True):
        super().__init__()
        head_in_fp32(hf_model)
        if pooling == "mean" and not (hasattr(hf_model, "pooler") and hasattr(hf_model, "classifier")):
            raise UserError(f"model.pooling=mean needs a DeBERTa-style head (pooler + classifier); "
                            f"{type(hf_model).__name__} has none: use model.pooling=cls (the model's own head)")
        self.hf = hf_model
        self.pooling = pooling
        self.fast = fast and fast_deberta.supports(hf_model)
        # BERT, RoBERTa, ELECTRA classifiers: rewardkit.modeling.fast.bert (their own heads, so cls pooling only)
        self.fast_bert = fast and pooling == "cls" and fast_bert.supports(hf_model)
        self.share_prefix = pooling == "cls" and packing.supports(hf_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                token_type_ids: torch.Tensor | None = None, layout: packing.Layout | None = None,
                lengths: list[int] | None = None) -> torch.Tensor:
        """`layout`: a packed batch (packing.Packed): (R, T) ids -> (N,) rewards in input order. `lengths`: each
        row's real tokens when the caller right-padded the rows itself (`pad_batch`); the fast forwards then plan
        from them and read nothing back from the device (else they check the mask: a sync)."""
        if layout is not None:
            return packing.packed_rewards(self.hf, input_ids, layout)
        # compiled graphs keep transformers' static-shape forward (fast_deberta's packing is data-dependent)
        packed = not torch.compiler.is_compiling() and (self.fast or self.fast_bert) and (
            lengths is not None or fast_deberta.right_padded(attention_mask))
        if packed and self.fast and token_type_ids is None:
            return fast_deberta.rewards(self.hf, input_ids, attention_mask, self.pooling, lengths)
        if packed and self.fast_bert:
            return fast_bert.rewards(self.hf, input_ids, attention_mask, token_type_ids, lengths)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if self.pooling == "cls":
            return self.hf(**inputs).logits[:, 0]
        hidden = self.hf.base_model(**inputs).last_hidden_state  # (N, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (N, H)
        return self.hf.classifier(self.hf.pooler(mean.unsqueeze(1)))[:, 0]  # the pooler reads position 0


class FP32Head:
    """Mixed into the class of a model's score head (as torch's `fully_shard` mixes FSDPModule into a module's
    class, so its weights and state-dict names stay as they are): the head runs outside autocast on fp32 inputs,
    so rewards are not rounded to bf16 (8 mantissa bits: spurious ties, coarse calibration) under bf16 autocast."""

    def forward(self, hidden: torch.Tensor, *args, **kwargs):
        with no_autocast(hidden.device):
            return super().forward(hidden.float(), *args, **kwargs)


@cache
def _fp32_class(cls: type) -> type:
    return type(f"FP32{cls.__name__}", (FP32Head, cls), {})


def score_head(hf_model: nn.Module) -> nn.Module | None:
    """The module that turns hidden states into the logit: `classifier` (encoders) or `score` (decoders)."""
    for name in ("classifier", "score"):
        if isinstance(getattr(hf_model, name, None), nn.Module):
            return getattr(hf_model, name)
    return None


def head_in_fp32(hf_model: nn.Module) -> None:
    """Make `hf_model`'s score head compute in fp32 under any autocast, in every forward that calls it (ours and
    transformers')."""
    head = score_head(hf_model)
    if head is not None and not isinstance(head, FP32Head):
        head.__class__ = _fp32_class(type(head))


def disable_dropout(model: nn.Module) -> None:
    """Reward models train without dropout (as TRL's RewardTrainer does by default): scores then do not depend
    on train/eval mode, and padding or batch composition cannot change them."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def load_base(name_or_dir: str, pooling: str, seed: int, tokenizer=None) -> tuple[RewardModel, object]:
    """The base to fine-tune, as (RewardModel, tokenizer); a new head is initialised from `seed`. `tokenizer`:
    the one the token store was made with (default: the base's own)."""
    torch.manual_seed(seed)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(name_or_dir)
    model = load_classifier(name_or_dir, tokenizer, report=True)
    disable_dropout(model)
    return RewardModel(model, pooling), tokenizer
