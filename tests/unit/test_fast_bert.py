"""rewardkit.modeling.fast.bert computes transformers' BERT, RoBERTa and ELECTRA rewards and gradients, without the
work on padding."""
from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from rewardkit.modeling.batching import pad_batch
from rewardkit.modeling.fast import bert as fast_bert
from rewardkit.modeling.model import RewardModel, disable_dropout

LENGTHS = (5, 37, 60, 1, 23, 44, 60, 58)  # right-padded to 64; a lone [CLS]; two equal, one 7/8 of them
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=300,
             max_position_embeddings=72, num_labels=1, initializer_range=0.5)  # large init: rewards far apart
FAMILIES = {"bert": (BertConfig, BertForSequenceClassification, 0),
            "roberta": (RobertaConfig, RobertaForSequenceClassification, 1),  # positions start at pad id + 1
            "electra": (ElectraConfig, ElectraForSequenceClassification, 0)}


def tiny_model(family: str = "bert", seed: int = 0, **overrides):
    config_class, model_class, pad_id = FAMILIES[family]
    config = config_class(**{**SIZES, "pad_token_id": pad_id, **overrides})
    torch.manual_seed(seed)
    model = model_class(config)
    disable_dropout(model)
    return model


def batch(seed: int = 0, token_types: bool = True, pad_id: int = 0):
    """Right-padded (ids, mask, token_type_ids): the response (type 1) starts halfway through each sequence."""
    gen = torch.Generator().manual_seed(seed)
    sequences = [torch.randint(4, 300, (n,), generator=gen).tolist() for n in LENGTHS]
    return pad_batch(sequences, pad_id, segments=[n // 2 for n in LENGTHS] if token_types else None)


def rewards_and_grads(model: RewardModel, inputs):
    model.zero_grad(set_to_none=True)
    rewards = model(*inputs)
    (rewards * torch.arange(1.0, len(rewards) + 1)).sum().backward()  # distinct weights: every row matters
    return rewards.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


CONFIGS = {
    "bert": ("bert", {}, True),
    "bert-no-token-types": ("bert", {}, False),  # token_type_ids None: transformers' zeros
    "bert-relu": ("bert", {"hidden_act": "relu"}, True),  # not gelu: the feed-forward runs transformers' modules
    "bert-one-layer": ("bert", {"num_hidden_layers": 1}, True),  # the only layer is the first-token-only one
    "roberta": ("roberta", {"type_vocab_size": 1}, False),
    "electra-projected": ("electra", {"embedding_size": 16}, True),  # embeddings_project 16 -> 32
}
CASES = [(name, "cpu-chunks") for name in CONFIGS] + [("bert", "one-chunk"), ("roberta", "one-chunk")]


@pytest.mark.parametrize("config,chunking", CASES, ids=["-".join(case) for case in CASES])
def test_rewards_and_gradients_match_transformers(config, chunking, monkeypatch):
    if chunking == "one-chunk":  # what CUDA runs: the whole batch padded to its longest sequence
        monkeypatch.setattr(fast_bert, "CPU_MAX_SCORES", None)
    else:  # small chunks: the 60s share one, the rest go alone
        monkeypatch.setattr(fast_bert, "CPU_MAX_SCORES", 3 * 60 ** 2)
    family, overrides, token_types = CONFIGS[config]
    hf = tiny_model(family, **overrides).train()
    fast, slow = RewardModel(hf, "cls"), RewardModel(hf, "cls", fast=False)
    assert fast.fast_bert and not slow.fast_bert and not fast.fast
    inputs = batch(token_types=token_types, pad_id=hf.config.pad_token_id)
    got, got_grads = rewards_and_grads(fast, inputs)
    want, want_grads = rewards_and_grads(slow, inputs)
    assert got.std() > 0.1  # the rewards differ, so matching each one means something
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got_grads.keys() == want_grads.keys()
    atol = 1e-5 * max(grad.abs().max().item() for grad in want_grads.values())  # some are zero up to rounding
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-3, atol=atol, msg=lambda m: f"{name}: {m}")


def test_inference_matches_and_padding_does_not_change_a_reward():
    hf = tiny_model(seed=1).eval()
    fast, slow = RewardModel(hf, "cls"), RewardModel(hf, "cls", fast=False)
    ids, mask, types = batch(seed=1)
    with torch.inference_mode():
        torch.testing.assert_close(fast(ids, mask, types), slow(ids, mask, types), rtol=1e-4, atol=1e-4)
        alone = torch.cat([fast(ids[i:i + 1, :n], mask[i:i + 1, :n], types[i:i + 1, :n])
                           for i, n in enumerate(LENGTHS)])
        torch.testing.assert_close(alone, fast(ids, mask, types), rtol=1e-5, atol=1e-5)


def test_left_padding_and_unsupported_configs_use_the_transformers_forward(monkeypatch):
    hf = tiny_model(seed=2).eval()
    calls = []
    monkeypatch.setattr(fast_bert, "rewards", lambda *a: calls.append(1) or torch.zeros(len(LENGTHS)))
    ids, mask, types = batch(seed=2)
    model = RewardModel(hf, "cls")
    with torch.inference_mode():
        model(ids.flip(1), mask.flip(1), types.flip(1))  # left padding: the first token of a row may be padding
        assert not calls
        model(ids, mask, types)
        assert calls
    assert not RewardModel(hf, "cls", fast=False).fast_bert
    for overrides in ({"is_decoder": True}, {"position_embedding_type": "relative_key"}):
        assert not RewardModel(tiny_model(**overrides), "cls").fast_bert, overrides

    class Custom(BertForSequenceClassification):  # a subclass may change the forward: not ours to reproduce
        pass

    assert not fast_bert.supports(Custom(hf.config))
