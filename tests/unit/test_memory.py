"""train.gradient_checkpointing: every layer is recomputed in backward, in transformers' forward and in the fast
ones, with the same gradients (fp32) and far fewer activations kept."""
from __future__ import annotations

import pytest
import torch
import transformers.modeling_utils
from transformers import LlamaConfig, LlamaForSequenceClassification

from rewardkit.errors import UserError
from rewardkit.modeling.model import RewardModel, disable_dropout
from rewardkit.training.memory import enable_activation_checkpointing
from tests.conftest import easy_rows, live_curve, train_in_process, train_summary
from tests.unit import test_fast_bert, test_fast_deberta


def tiny_llama(seed: int = 0):
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=300, num_labels=1, pad_token_id=0,
                         initializer_range=0.5)
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    disable_dropout(model)
    return model


MODELS = {  # name: (builder of a RewardModel, inputs, whether a fast forward runs)
    "deberta-fast": (lambda: RewardModel(test_fast_deberta.tiny_model(), "cls"), test_fast_deberta.batch, True),
    "deberta-mean-fast": (lambda: RewardModel(test_fast_deberta.tiny_model(), "mean"), test_fast_deberta.batch,
                          True),
    "deberta-transformers": (lambda: RewardModel(test_fast_deberta.tiny_model(), "cls", fast=False),
                             test_fast_deberta.batch, False),
    "bert-fast": (lambda: RewardModel(test_fast_bert.tiny_model(), "cls"), test_fast_bert.batch, True),
    "llama-transformers": (lambda: RewardModel(tiny_llama(), "cls"), test_fast_deberta.batch, False),
    "deberta-lora-fast": (lambda: with_lora(RewardModel(test_fast_deberta.tiny_model(), "cls")),
                          test_fast_deberta.batch, True),
}


def with_lora(model: RewardModel) -> RewardModel:
    from rewardkit.config import LoraSettings
    from rewardkit.training.lora import apply_lora

    apply_lora(model, LoraSettings(r=4))
    return model


def rewards_grads_and_saved_bytes(model: RewardModel, inputs):
    """Rewards, gradients (a distinct weight per row) and the bytes autograd kept for backward outside
    checkpointed regions."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        rewards = model(*inputs)
    (rewards * torch.arange(1.0, len(rewards) + 1)).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return rewards.detach(), grads, sum(saved)


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpointed_gradients_equal_and_fewer_activations_are_kept(name, monkeypatch):
    build, inputs_of, fast = MODELS[name]
    inputs = inputs_of()
    model = build().train()
    assert (model.fast or model.fast_bert) == fast
    want, want_grads, plain_bytes = rewards_grads_and_saved_bytes(model, inputs)

    calls = []
    real = transformers.modeling_utils.checkpoint  # what activation_checkpointing_enable wraps
    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", lambda *a, **k: calls.append(k) or real(*a, **k))
    enable_activation_checkpointing(model)
    got, got_grads, checkpointed_bytes = rewards_grads_and_saved_bytes(model, inputs)

    assert len(calls) == 2 and all(k == {"use_reentrant": False} for k in calls)  # each of the 2 layers, once
    assert checkpointed_bytes < 0.5 * plain_bytes  # the layers' activations are recomputed, not kept
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert got_grads.keys() == want_grads.keys()
    for key, grad in want_grads.items():
        torch.testing.assert_close(got_grads[key], grad, rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")


def test_eval_and_no_grad_forwards_are_not_checkpointed(monkeypatch):
    model = RewardModel(test_fast_deberta.tiny_model(), "cls")
    enable_activation_checkpointing(model)
    calls = []
    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", lambda *a, **k: calls.append(1))
    with torch.no_grad():
        model.train()(*test_fast_deberta.batch())
    model.eval()(*test_fast_deberta.batch())
    assert not calls


def test_a_family_without_checkpointing_stops_with_one_line(monkeypatch):
    model = RewardModel(test_fast_deberta.tiny_model(), "cls")
    monkeypatch.setattr(type(model.hf), "supports_gradient_checkpointing", False)
    with pytest.raises(UserError, match=r"^train.gradient_checkpointing: DebertaV2ForSequenceClassification does not "
                                        r"support .*set train.gradient_checkpointing=false$"):
        enable_activation_checkpointing(model)


def test_the_train_stage_checkpoints_with_the_knob_and_trains_the_same(tmp_path, tiny_base, monkeypatch):
    calls = []
    real = transformers.modeling_utils.checkpoint
    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    train = {"max_length": 64, "batch_size": 8, "max_steps": 4, "lr": 3e-3, "checkpoint_every": 0}
    plain = train_in_process(tmp_path / "plain", tiny_base, easy_rows(48), train=train)
    assert not calls
    checkpointed = train_in_process(tmp_path / "ckpt", tiny_base, easy_rows(48),
                                    train={**train, "gradient_checkpointing": True})
    assert len(calls) == 4 * 2  # every step, each of the base's 2 layers
    curves = [live_curve(work) for work in (plain, checkpointed)]
    assert len(curves[0]) == 4 and curves[0] == curves[1]
    metrics = [train_summary(work) for work in (plain, checkpointed)]
    assert metrics[1]["train_loss"] == pytest.approx(metrics[0]["train_loss"], abs=1e-6)
