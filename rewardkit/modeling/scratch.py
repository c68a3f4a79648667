"""Offline bases' weights: a randomly initialised classifier for a scratch tokenizer, written with it as a Hugging
Face directory (sizes, configs and tokenizers: rewardkit.encoding.scratch)."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from rewardkit.encoding.scratch import scratch_config, train_scratch_tokenizer
from rewardkit.encoding.tokenizers import quiet_transformers
from rewardkit.io import atomic_path


def init_scratch_model(sizes: str | Mapping, tokenizer_dir: Path, out_dir: Path, seed: int) -> Path:
    """A randomly initialised scratch base for the tokenizer in `tokenizer_dir`, written with it to `out_dir`."""
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    with quiet_transformers(), atomic_path(out_dir, is_dir=True) as tmp:
        for file in Path(tokenizer_dir).iterdir():
            shutil.copy2(file, tmp / file.name)
        config, model_class = scratch_config(sizes, AutoTokenizer.from_pretrained(str(tmp)))
        torch.manual_seed(seed)
        model_class(config).save_pretrained(str(tmp))
    return out_dir


def build_scratch(sizes: str | Mapping, texts: Iterable[str], vocab_size: int, out_dir: str | Path,
                  seed: int) -> Path:
    """Write a randomly initialised reward model and its tokenizer trained on `texts` to `out_dir`.

    `sizes` is a SCRATCH_SIZES name or a dict of config values (tests build smaller ones): DebertaV2Config
    values, or BertConfig values with model_type="bert"."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.exists() else None) as tokenizer_dir:
        train_scratch_tokenizer(sizes, texts, vocab_size, Path(tokenizer_dir))
        return init_scratch_model(sizes, Path(tokenizer_dir), out_dir, seed)
