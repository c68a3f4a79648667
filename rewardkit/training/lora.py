"""train.lora: LoRA adapters (peft) on the base's body, the reward head trained fully.

The head is every module of the classifier outside its base model (DeBERTa's pooler and classifier, RoBERTa's
classification head, a decoder's `score`): newly initialised, so it is trained whole (peft's `modules_to_save`) and
never given adapters — a LoRA reward model whose head stays at its random init learns nothing useful (TRL #1379,
OpenRLHF #873). peft injects its layers into the transformers model in place, so `RewardModel.hf` stays that model
and the fast forwards call the wrapped projections as modules.

Released: the adapters merged into the base (`merge_and_unload`), a plain `...ForSequenceClassification` that loads
with the Auto classes and no peft, and the adapter itself (`save_pretrained`) beside it
(rewardkit.modeling.artifact.ADAPTER_DIR).
"""
from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from rewardkit.config import LoraSettings
from rewardkit.errors import UserError
from rewardkit.modeling.model import RewardModel


def head_modules(hf_model: nn.Module) -> list[str]:
    """Names of the classifier's children outside its base model that hold weights: the reward head."""
    prefix = getattr(hf_model, "base_model_prefix", "")
    return [name for name, module in hf_model.named_children()
            if name != prefix and next(module.parameters(), None) is not None]


def apply_lora(model: RewardModel, settings: LoraSettings):
    """Inject LoRA adapters into `model.hf` (in place) and freeze the rest of the body; returns peft's model, which
    `release` merges at the end. A target that names no module, or a module peft cannot adapt, stops with one line."""
    from peft import LoraConfig, get_peft_model

    heads = head_modules(model.hf)
    if not heads:
        raise UserError(f"train.lora: {type(model.hf).__name__} has no head outside its base model to train fully; "
                        "set train.lora.r=0")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules, modules_to_save=heads,
                        exclude_modules=rf"({'|'.join(map(re.escape, heads))})(\..*)?")  # no adapter on the head
    try:
        peft_model = get_peft_model(model.hf, config)
    except ValueError as e:  # peft's NoMatchingPeftModuleError is one, as is "Target module ... is not supported"
        raise UserError(not_adaptable(model.hf, settings, e)) from None
    return peft_model


def not_adaptable(hf_model: nn.Module, settings: LoraSettings, error: Exception) -> str:
    """One line for a train.lora.target_modules peft cannot apply: why, and the body's linear layers there are."""
    from peft import NoMatchingPeftModuleError

    if isinstance(error, NoMatchingPeftModuleError):
        said = "it names no module of the body (the head is trained in full, never adapted)"
    else:  # e.g. "Target module LayerNorm(...) is not supported": the first sentence of peft's message
        said = " ".join(str(error).split()).split(". ")[0]
    body = getattr(hf_model, getattr(hf_model, "base_model_prefix", ""), hf_model)
    linears = sorted({name.rsplit(".", 1)[-1] for name, m in body.named_modules() if isinstance(m, nn.Linear)})
    return (f"train.lora.target_modules={settings.target_modules!r} on {type(hf_model).__name__}: {said}. Use "
            f"all-linear or some of its linear layers: {', '.join(linears) or 'none'} (or train.lora.r=0)")


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def release(model: RewardModel, peft_model, adapter_dir: Path, base_name: str) -> None:
    """Save the adapter to `adapter_dir`, then merge it into the base: `model.hf` becomes a plain transformers
    classifier (no peft layers, the trained head in place) whose rewards are the adapted model's. `base_name`
    (model.name) is what the adapter's config names as its base, not the local directory it was loaded from."""
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    peft_model.save_pretrained(str(adapter_dir))
    model.hf = peft_model.merge_and_unload()
