"""The reward model: a Hugging Face sequence classifier with one label, and loading one of any family.

Encoders (DeBERTa, BERT, RoBERTa, ELECTRA, ModernBERT, ...) read a text pair; decoder-only classifiers (Llama,
Qwen2, ...) read prompt + response + EOS and transformers' head pools the last non-pad token. `input_template`
says which, from the config, and the tokenizer says where its special tokens go.
"""
from __future__ import annotations

import contextlib
import os
import sys

import torch
from torch import nn

from rewardkit import fast_deberta
from rewardkit.encoding import CONCAT, TEXT_PAIR, PairTemplate, pair_template
from rewardkit.errors import UserError

PAD_TOKEN = "<|pad|>"  # added to a decoder's tokenizer that has no pad token of its own (or only EOS as pad)


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
                            f"{type(hf_model).__name__} has none: use model.pooling=cls (the model's own head)")
        self.hf = hf_model
        self.pooling = pooling
        self.fast = fast and fast_deberta.supports(hf_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        # compiled graphs keep transformers' static-shape forward (fast_deberta's packing is data-dependent)
        if (self.fast and token_type_ids is None and not torch.compiler.is_compiling()
                and fast_deberta.right_padded(attention_mask)):
            return fast_deberta.rewards(self.hf, input_ids, attention_mask, self.pooling)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if self.pooling == "cls":
            return self.hf(**inputs).logits[:, 0]
        hidden = self.hf.base_model(**inputs).last_hidden_state  # (N, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (N, H)
        return self.hf.classifier(self.hf.pooler(mean.unsqueeze(1)))[:, 0]  # the pooler reads position 0


def disable_dropout(model: nn.Module) -> None:
    """Reward models train without dropout (as TRL's RewardTrainer does by default): scores then do not depend
    on train/eval mode, and padding or batch composition cannot change them."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def is_decoder_only(config) -> bool:
    """A causal language model family (Llama, Qwen2, Mistral, Gemma, ...), not an encoder that also has a causal
    head (BERT, RoBERTa) nor an encoder-decoder."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = config.model_type
    return (kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
            and not getattr(config, "is_encoder_decoder", False))


def input_template(config, tokenizer) -> PairTemplate:
    """How this model reads a (prompt, response): a decoder's concatenation + EOS, or an encoder's text pair with
    token_type_ids when its config has a type vocabulary (BERT, ELECTRA; not DeBERTa-v3 or RoBERTa)."""
    if is_decoder_only(config):
        return pair_template(tokenizer, CONCAT)
    return pair_template(tokenizer, TEXT_PAIR, token_types=(getattr(config, "type_vocab_size", 0) or 0) > 1)


@contextlib.contextmanager
def quiet_transformers():
    """transformers' progress bars and load report off: our own bars and one summary line replace them."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def load_hf_classifier(name_or_dir: str, report: bool = False):
    """AutoModelForSequenceClassification(num_labels=1) and AutoTokenizer, with errors that say what to do.

    A decoder without a pad token distinct from EOS gets one (PAD_TOKEN, embeddings resized), so the EOS that
    ends every input is the token transformers' head pools. `report`: say in one line which weights were newly
    initialised (a reward head on a base model, as expected)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if os.path.isdir(name_or_dir) and not os.path.isfile(os.path.join(name_or_dir, "config.json")):
        raise UserError(f"model directory {name_or_dir} has no config.json: point model.name at a directory "
                        "written by save_pretrained (config.json, weights and tokenizer files)")
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
            model, info = AutoModelForSequenceClassification.from_pretrained(name_or_dir, num_labels=1,
                                                                             output_loading_info=True)
    except OSError as e:
        raise UserError(f"could not load model {name_or_dir!r}: {str(e).splitlines()[0]} -- without network use "
                        "model.name=scratch-tiny (offline) or a local directory with the weights") from None
    if model.config.num_labels != 1:
        raise UserError(f"{name_or_dir} has a {model.config.num_labels}-label head; a reward model needs num_labels=1")
    decoder = is_decoder_only(model.config)
    if decoder and (tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id):
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token_id is None:
        raise UserError(f"tokenizer of {name_or_dir} has no pad token; set one in its tokenizer_config.json")
    model.config.pad_token_id = tokenizer.pad_token_id
    if report and (line := load_report(type(model).__name__, name_or_dir, info)):
        print(line, file=sys.stderr)
    return model, tokenizer


def load_report(cls: str, source: str, info: dict) -> str | None:
    """transformers' loading info as one line: which weights were initialised (None when all were loaded)."""
    new = sorted({k if isinstance(k, str) else k[0] for k in (*info["missing_keys"], *info["mismatched_keys"])})
    unused = sorted(info["unexpected_keys"])
    if not new and not unused:
        return None
    line = f"model: {cls} from {source}: newly initialised {', '.join(new) or 'nothing'}"
    if unused:
        line += f"; checkpoint weights not used: {', '.join(unused)}"
    return line + " (a new reward head on a base model is expected)"


def load_base(name_or_dir: str, pooling: str, seed: int) -> tuple[RewardModel, object]:
    """The base to fine-tune, as (RewardModel, tokenizer); a new head is initialised from `seed`."""
    torch.manual_seed(seed)
    model, tokenizer = load_hf_classifier(name_or_dir, report=True)
    disable_dropout(model)
    return RewardModel(model, pooling), tokenizer
