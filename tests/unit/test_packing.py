"""Prefix-shared packing for decoders (rewardkit.modeling.packing) is exact: rewards and gradients of packed pairs
(prompt once, several pairs a row) equal each sequence's own unpadded forward in fp32, for Llama and Qwen2, with
sdpa and eager attention; encoders and sliding-window models are not packed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    MistralConfig,
    MistralForSequenceClassification,
    Qwen2Config,
    Qwen2ForSequenceClassification,
)

from rewardkit.modeling import packing
from rewardkit.modeling.model import RewardModel
from tests.conftest import easy_rows, live_curve, train_in_process, train_summary

SIZES = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=64, max_position_embeddings=256, pad_token_id=0)
FAMILIES = {"llama": (LlamaConfig, LlamaForSequenceClassification),
            "qwen2": (Qwen2Config, Qwen2ForSequenceClassification)}
EOS = 2


def decoder(family: str, attention: str = "sdpa", **overrides) -> RewardModel:
    config_cls, model_cls = FAMILIES[family]
    torch.manual_seed(0)
    hf = model_cls(config_cls(**{**SIZES, **overrides}, attn_implementation=attention)).float()
    return RewardModel(hf, "cls")


def pairs(rng: np.random.Generator) -> list[list[int]]:
    """Chosen then rejected sequences of 4 pairs: prompts of 5, 17, 40 and 9 tokens (BOS first), the last pair's
    answers 3 and 30 tokens long (10x), each answer ending in EOS."""
    def text(n):
        return [int(t) for t in rng.integers(3, SIZES["vocab_size"], n)]
    chosen, rejected = [], []
    for prompt_len, (c, r) in zip((5, 17, 40, 9), ((4, 6), (12, 2), (7, 7), (3, 30))):
        prompt = [1] + text(prompt_len - 1)
        chosen.append(prompt + text(c - 1) + [EOS])
        rejected.append(prompt + text(r - 1) + [EOS])
    return chosen + rejected


def one_by_one(model: RewardModel, sequences: list[list[int]]) -> torch.Tensor:
    """The unshared, unpacked reference: every sequence alone through transformers' classifier, no padding."""
    return torch.cat([model.hf(input_ids=torch.tensor([s])).logits[:, 0] for s in sequences])


def rewards_and_grads(model: RewardModel, forward, weights: torch.Tensor):
    model.zero_grad(set_to_none=True)
    rewards = forward()
    (rewards * weights).sum().backward()
    return rewards.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family,attention", [("llama", "sdpa"), ("qwen2", "sdpa"), ("llama", "eager")])
def test_packed_pairs_equal_unshared_forward(family, attention):
    model = decoder(family, attention)
    sequences = pairs(np.random.default_rng(0))
    packed = packing.pack(sequences, 0, packing.pair_groups(4))
    assert model.share_prefix
    # the prompt is there once a pair, and pairs share rows: fewer rows than pairs, fewer tokens than unshared
    assert len(packed.input_ids) < len(sequences) // 2
    assert int((packed.layout.group >= 0).sum()) == sum(map(len, sequences)) - (5 + 17 + 40 + 9)
    weights = torch.linspace(-1.0, 2.0, len(sequences))
    want, want_grads = rewards_and_grads(model, lambda: one_by_one(model, sequences), weights)
    got, got_grads = rewards_and_grads(model, lambda: model(*packed), weights)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_rejected_answer_does_not_see_the_chosen_one():
    """Changing a chosen answer's tokens leaves its rejected partner's reward as it was (and changes its own)."""
    model = decoder("llama")
    sequences = pairs(np.random.default_rng(1))
    base = model(*packing.pack(sequences, 0, packing.pair_groups(4))).detach()
    edited = [list(s) for s in sequences]
    edited[0][-2] = (edited[0][-2] + 1) % 100 + 3  # the chosen answer of pair 0, before its EOS
    after = model(*packing.pack(edited, 0, packing.pair_groups(4))).detach()
    assert after[0] != base[0]
    torch.testing.assert_close(after[1:], base[1:], atol=1e-6, rtol=0)


def test_a_packed_batch_moves_every_tensor_to_the_device():
    """The meta device stands in for a GPU: ids and every layout tensor move (CUDA takes devices.to_device's pinned,
    non-blocking copy)."""
    packed = packing.pack(pairs(np.random.default_rng(3)), 0, packing.pair_groups(4))
    moved = packed.to(torch.device("meta"))
    assert [t.device.type for t in (moved.input_ids, *moved.layout)] == ["meta"] * (1 + len(packed.layout))
    assert [t.shape for t in moved.layout] == [t.shape for t in packed.layout]


def test_groups_share_the_longest_common_prefix_and_keep_an_own_token():
    seqs = [[1] + list(range(10, 40)) + [5, EOS], [1] + list(range(10, 40)) + [6, 7, EOS],
            [1] + list(range(10, 40)), [1, 99, 98] + list(range(50, 70))]
    groups = packing.prefix_groups(seqs, max_tokens=1000)
    by_member = {tuple(sorted(m)): p for m, p in groups}
    # seqs[2] is a prefix of the others: the group keeps its last token as its own answer
    assert by_member == {(0, 1, 2): 30, (3,): 0}
    # a group never outgrows its budget
    assert all(packing.group_tokens(seqs, g) <= 40 for g in packing.prefix_groups(seqs, max_tokens=40))


def test_best_of_n_packs_the_prompt_once():
    rng = np.random.default_rng(2)
    prompt = [1] + [int(t) for t in rng.integers(3, 100, 60)]
    candidates = [prompt + [int(t) for t in rng.integers(3, 100, n)] + [EOS] for n in (3, 8, 20, 5, 11)]
    packed = packing.pack(candidates, 0, [list(range(5))])
    assert packed.input_ids.shape[0] == 1 and int((packed.layout.group >= 0).sum()) == 61 + sum((4, 9, 21, 6, 12))
    model = decoder("qwen2")
    with torch.no_grad():
        torch.testing.assert_close(model(*packed), one_by_one(model, candidates), atol=1e-5, rtol=0)


def test_encoders_and_sliding_windows_are_not_packed():
    deberta = DebertaV2ForSequenceClassification(DebertaV2Config(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                                                 num_attention_heads=2, intermediate_size=64,
                                                                 num_labels=1))
    assert not RewardModel(deberta, "cls").share_prefix
    mistral = dict(SIZES, attn_implementation="sdpa")
    assert not packing.supports(MistralForSequenceClassification(MistralConfig(**mistral, sliding_window=16)))
    assert packing.supports(MistralForSequenceClassification(MistralConfig(**mistral, sliding_window=None)))
    assert not decoder("qwen2", use_sliding_window=True, sliding_window=16, max_window_layers=0).share_prefix


@pytest.mark.parametrize("variant", ["gradient_checkpointing", "lora"])
def test_packed_pairs_stay_exact_with_checkpointing_and_lora(variant):
    model = decoder("llama")
    if variant == "gradient_checkpointing":
        model.hf.activation_checkpointing_enable()
    else:
        from peft import LoraConfig, get_peft_model

        hf = get_peft_model(model.hf, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
        model = RewardModel(hf, "cls")
    model.train()
    assert model.share_prefix
    sequences = pairs(np.random.default_rng(3))
    weights = torch.linspace(1.0, -1.0, len(sequences))
    want, want_grads = rewards_and_grads(model, lambda: one_by_one(model, sequences), weights)
    got, got_grads = rewards_and_grads(model, lambda: model(*packing.pack(sequences, 0, packing.pair_groups(4))),
                                       weights)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert want_grads and got_grads.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    from tests.unit.test_families import build

    return build("llama", tmp_path_factory.mktemp("llama") / "base")


KNOB_TRAIN = {"max_length": 64, "batch_size": 6, "epochs": 1, "lr": 1e-2, "warmup_ratio": 0.0, "checkpoint_every": 0}


def test_prefix_sharing_knob_trains_the_same_model_packed_or_padded(tiny_llama, tmp_path, monkeypatch):
    """train.prefix_sharing auto packs every micro-batch (off packs none), and both train the same model: equal
    losses step by step and equal final rewards within float rounding."""
    spy = []
    real_pack = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *a, **k: spy.append(1) or real_pack(*a, **k))
    train_in_process(tmp_path / "auto", tiny_llama, easy_rows(24), train=KNOB_TRAIN | {"prefix_sharing": "auto"})
    packed_auto = len(spy)
    spy.clear()
    train_in_process(tmp_path / "off", tiny_llama, easy_rows(24), train=KNOB_TRAIN | {"prefix_sharing": "off"})
    assert packed_auto >= 4 and not spy  # 4 steps (plus the final scoring) packed, none with off
    auto, off = (train_summary(tmp_path / run) for run in ("auto", "off"))
    curves = [[r["loss"] for r in live_curve(tmp_path / run)] for run in ("auto", "off")]
    assert len(curves[0]) == 4 and curves[0] == pytest.approx(curves[1], abs=1e-5)
    assert auto["train_loss"] == pytest.approx(off["train_loss"], abs=1e-5)
    assert curves[0][0] != curves[0][-1]  # it trained


def test_best_of_n_computes_the_prompt_once_and_matches_hugging_face(tiny_llama, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardkit.modeling import inference
    from rewardkit.modeling.loading import load_hf_classifier
    from rewardkit.scoring.scorer import RewardScorer

    hf, tokenizer = load_hf_classifier(str(tiny_llama))
    scorer = RewardScorer(RewardModel(hf, "cls").eval(), tokenizer, {"max_length": 64, "rendering": "plain"},
                          torch.device("cpu"))
    prompt, candidates = "User: what is 2 plus 3?\nAssistant:", [" 5.", " The sum is 5.", " Six, I think.", " 5"]
    batches = []
    real = inference.pack_batch
    monkeypatch.setattr(inference, "pack_batch", lambda s, b, p: batches.append(b) or real(s, b, p))
    ours = scorer.score(prompt, candidates)
    assert batches == [[[0, 1, 2, 3]]]  # one group: the prompt once for the four candidates
    theirs_model = AutoModelForSequenceClassification.from_pretrained(tiny_llama).eval()
    theirs_tok = AutoTokenizer.from_pretrained(tiny_llama)
    with torch.inference_mode():
        theirs = [theirs_model(**theirs_tok(prompt + c + theirs_tok.eos_token, return_tensors="pt")).logits[0, 0]
                  .item() for c in candidates]
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_a_sliding_window_in_a_packed_row_covers_the_wrong_tokens_so_such_models_are_refused():
    """Why sliding-window bases are not packed: transformers counts the window in row indices, so packed rewards
    differ from the unshared forward (the rejected answer sits after the chosen one); Mistral with a window,
    Qwen2 with use_sliding_window and Gemma 2 are refused with their reason, plain Qwen2 (full layers) packs."""
    from transformers import Gemma2Config, Gemma2ForSequenceClassification

    torch.manual_seed(0)
    mistral = MistralForSequenceClassification(MistralConfig(**SIZES, sliding_window=8,
                                                             attn_implementation="sdpa")).float().eval()
    sequences = pairs(np.random.default_rng(5))
    packed = packing.pack(sequences, 0, packing.pair_groups(4))
    with torch.no_grad():
        got = packing.packed_rewards(mistral, packed.input_ids, packed.layout)
        want = one_by_one(RewardModel(mistral, "cls"), sequences)
    assert (got - want).abs().max() > 1e-3  # the packed mask would not be exact: hence the refusal
    assert "sliding-window" in packing.unsupported_reason(mistral)
    assert not RewardModel(mistral, "cls").share_prefix
    gemma2 = Gemma2ForSequenceClassification(Gemma2Config(**SIZES, head_dim=8, sliding_window=8,
                                                          attn_implementation="eager"))
    assert "sliding-window" in packing.unsupported_reason(gemma2)
    assert packing.unsupported_reason(decoder("qwen2").hf) is None
    assert "sliding-window" in packing.unsupported_reason(
        decoder("qwen2", use_sliding_window=True, sliding_window=8, max_window_layers=0).hf)


def test_checkpointing_leaves_packed_gradients_unchanged():
    """train.gradient_checkpointing (rewardkit.training.memory's switch) on a packed batch: the recomputed layers
    see the same pair mask and position ids, so rewards and every gradient equal the stored-activation run within
    1e-6 in fp32."""
    from rewardkit.training.memory import enable_activation_checkpointing

    sequences = pairs(np.random.default_rng(5))
    packed = packing.pack(sequences, 0, packing.pair_groups(4))
    weights = torch.linspace(1.0, -1.0, len(sequences))
    results = []
    for checkpointed in (False, True):
        model = decoder("llama", num_hidden_layers=3)
        if checkpointed:
            enable_activation_checkpointing(model)
        model.train()
        assert model.share_prefix and model.hf.model.gradient_checkpointing == checkpointed
        results.append(rewards_and_grads(model, lambda: model(*packed), weights))
    (want, want_grads), (got, got_grads) = results
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert len(want_grads) == len(list(model.parameters())) and got_grads.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], atol=1e-6, rtol=0, msg=name)


def test_lora_with_sharing_releases_a_model_hugging_face_scores_as_we_do(tiny_llama, tmp_path, monkeypatch):
    """train.lora with prefix sharing (and checkpointing) on a decoder: every step packed, the adapters trained, and
    the merged artifact gives our rewards through AutoModelForSequenceClassification within 1e-5."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardkit.scoring.scorer import RewardScorer

    spy = []
    real_pack = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *a, **k: spy.append(1) or real_pack(*a, **k))
    work = train_in_process(tmp_path, tiny_llama, easy_rows(24), train=KNOB_TRAIN | {
        "lr": 3e-3, "lora": {"r": 4, "alpha": 8}, "gradient_checkpointing": True, "prefix_sharing": "auto"})
    assert len(spy) >= 4  # 4 training steps packed (and the final scoring)
    model_dir = work / "models" / "trained"
    assert json.loads((model_dir / "reward_model.json").read_text())["lora"]["r"] == 4
    rows = easy_rows(6, seed=7)
    prompts, answers = [r["prompt"] for r in rows] * 2, [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    ours = RewardScorer.from_pretrained(model_dir, device="cpu").score(prompts, answers)
    theirs_model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    theirs_tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_llama, num_labels=1).eval()
    with torch.inference_mode():
        inputs = [theirs_tok(p + a + theirs_tok.eos_token, return_tensors="pt") for p, a in zip(prompts, answers)]
        theirs = [theirs_model(**x).logits[0, 0].item() for x in inputs]
        untrained = [base(**x).logits[0, 0].item() for x in inputs]
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(theirs, untrained)) > 1e-3  # the adapters and head were trained
