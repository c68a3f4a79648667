"""The trained reward model on disk: `save_pretrained` (safetensors) + tokenizer + reward_model.json, which records
what a consumer needs to score as training did (max length, truncation policy, pooling, reward mean/std)."""
from __future__ import annotations

import json
from pathlib import Path

from rewardkit.errors import UserError
from rewardkit.io import atomic_path
from rewardkit.model import RewardModel, disable_dropout, load_hf_classifier

META_FILE = "reward_model.json"


def save_artifact(model: RewardModel, tokenizer, out_dir: str | Path, meta: dict) -> None:
    """Write the model directory atomically, as one directory."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.hf.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_artifact(model_dir: str | Path) -> tuple[RewardModel, object, dict]:
    """A trained reward model directory -> (RewardModel in eval mode, tokenizer, metadata)."""
    meta_path = Path(model_dir) / META_FILE
    if not meta_path.is_file():
        raise UserError(f"{model_dir} is not a reward model written by the train stage ({META_FILE} is missing)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    model, tokenizer = load_hf_classifier(str(model_dir))
    disable_dropout(model)
    return RewardModel(model, meta["pooling"]).eval(), tokenizer, meta
