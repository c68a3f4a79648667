"""The CUDA precision path, proxied on CPU: whole training steps under bf16 autocast (what `devices.autocast`
gives on CUDA) for the fast DeBERTa forward and transformers' generic forward: finite losses, fp32 master weights
that move, and bf16 rewards close to fp32 ones."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch

from rewardkit.config import TrainConfig
from rewardkit.encoding.families import input_template
from rewardkit.encoding.templates import encode_both_answers
from rewardkit.encoding.tokenization import store_rows
from rewardkit.modeling.batching import pad_batch
from rewardkit.modeling.model import load_base
from rewardkit.modeling.scratch import build_scratch
from rewardkit.training import loop as optimization
from rewardkit.training.distributed import Ranks
from tests.conftest import easy_rows, tiny_config

ROWS = easy_rows(32)
TEXTS = [t for r in ROWS for t in (r["prompt"], r["chosen"], r["rejected"])]
# a large init scale, so rewards differ between sequences and the bf16/fp32 comparison means something
BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            type_vocab_size=2, initializer_range=0.3)


def bf16_autocast(device: torch.device):
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.fixture(scope="module", params=["deberta-v3-fast", "bert-generic"])
def base(request, tmp_path_factory) -> Path:
    sizes = tiny_config(initializer_range=0.3) if request.param.startswith("deberta") else BERT
    return build_scratch(sizes, TEXTS, 400, tmp_path_factory.mktemp(request.param) / "base", 0)


def test_training_steps_under_bf16_autocast(base, monkeypatch, tmp_path):
    model, tokenizer = load_base(str(base), "cls", seed=0)
    assert model.fast == ("deberta" in base.parent.name)
    pairs = store_rows(ROWS, tmp_path / "store", tokenizer, model.hf.config, 64)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads: list[torch.dtype] = []
    for p in model.parameters():
        p.register_hook(lambda g: grads.append(g.dtype) or g)
    monkeypatch.setattr(optimization, "autocast", bf16_autocast)
    cfg = TrainConfig(max_length=64, batch_size=8, epochs=1, lr=1e-3, warmup_ratio=0.0, checkpoint_every=0,
                      device="cpu")
    with tempfile.TemporaryDirectory() as ckpt:
        curve = optimization.optimize(model, pairs, cfg, torch.device("cpu"), Ranks(), tokenizer.pad_token_id,
                                      Path(ckpt))
    assert len(curve) == 4 and all(math.isfinite(r["loss"]) for r in curve)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert set(grads) == {torch.float32}  # autocast casts back: gradients land in fp32 too
    still = {name for name, p in model.named_parameters() if torch.equal(p, before[name])}
    assert still == {"hf.classifier.bias"}  # BT loss sees r+ - r-: the head's bias gets exactly zero gradient


def test_bf16_rewards_are_close_to_fp32(base):
    model, tokenizer = load_base(str(base), "cls", seed=0)
    enc = encode_both_answers(tokenizer, ROWS[:8], 64, input_template(model.hf.config, tokenizer))
    inputs = pad_batch(enc.ids, tokenizer.pad_token_id, segments=enc.segments)
    model.eval()
    with torch.inference_mode():
        fp32 = model(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(*inputs).float()
    assert fp32.std() > 0.01
    torch.testing.assert_close(bf16, fp32, atol=0.05 * fp32.abs().max().item(), rtol=0.05)
