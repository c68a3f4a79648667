"""Loading a one-label sequence classifier of any family (a base to fine-tune, or a trained model), with one
line instead of transformers' load report."""
from __future__ import annotations

import sys

from rewardkit.encoding.tokenizers import check_base_dir, load_tokenizer, not_loadable, quiet_transformers
from rewardkit.errors import UserError


def load_classifier(name_or_dir: str, tokenizer, report: bool = False, dtype=None):
    """AutoModelForSequenceClassification(num_labels=1) for `tokenizer` (embeddings resized when the tokenizer
    gained a pad token). `report`: say in one line which weights were newly initialised (a reward head on a base
    model, as expected). `dtype`: load the weights in it (default: as saved)."""
    from transformers import AutoModelForSequenceClassification

    check_base_dir(name_or_dir)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(name_or_dir, num_labels=1,
                                                                             output_loading_info=True, **kwargs)
    except OSError as e:
        raise not_loadable(name_or_dir, e) from None
    if model.config.num_labels != 1:
        raise UserError(f"{name_or_dir} has a {model.config.num_labels}-label head; a reward model needs num_labels=1")
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if report and (line := load_report(type(model).__name__, name_or_dir, info)):
        print(line, file=sys.stderr)
    return model


def load_hf_classifier(name_or_dir: str, report: bool = False, dtype=None):
    """The classifier and its tokenizer, with errors that say what to do."""
    tokenizer = load_tokenizer(name_or_dir)
    return load_classifier(name_or_dir, tokenizer, report, dtype), tokenizer


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
