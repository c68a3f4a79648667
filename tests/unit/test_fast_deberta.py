"""rewardkit.modeling.fast.deberta computes transformers' DebertaV2 rewards and gradients, without the work on
padding."""
from __future__ import annotations

import pytest
import torch
from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

from rewardkit.modeling.batching import pad
from rewardkit.modeling.fast import deberta as fast_deberta
from rewardkit.modeling.fast.ops import plan
from rewardkit.modeling.model import RewardModel, disable_dropout
from tests.conftest import tiny_config

LENGTHS = (5, 37, 60, 1, 23, 44, 60, 58)  # right-padded to 64; a lone [CLS]; two equal, one 7/8 of them


def tiny_model(seed: int = 0, **overrides) -> DebertaV2ForSequenceClassification:
    # a large init scale so that rewards and gradients are far from zero and differences would show
    config = DebertaV2Config(**tiny_config(initializer_range=0.5, **overrides), vocab_size=300, num_labels=1,
                             pad_token_id=0)
    torch.manual_seed(seed)
    model = DebertaV2ForSequenceClassification(config)
    disable_dropout(model)
    return model


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return pad([torch.randint(4, 300, (n,), generator=gen).tolist() for n in LENGTHS], pad_id=0)


def rewards_and_grads(model: RewardModel, ids: torch.Tensor, mask: torch.Tensor):
    model.zero_grad(set_to_none=True)
    rewards = model(ids, mask)
    (rewards * torch.arange(1.0, len(rewards) + 1)).sum().backward()  # distinct weights: every row matters
    return rewards.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


CONFIGS = {
    "v3": {},  # deberta-v3: shared attention keys, c2p + p2c, 256 log buckets
    "separate-pos-proj": {"share_att_key": False},
    "c2p-only": {"pos_att_type": ["c2p"]},
    "p2c-only": {"pos_att_type": ["p2c"]},
    "log-buckets": {"position_buckets": 8, "max_position_embeddings": 64},  # lengths beyond the exact buckets
    "relu": {"hidden_act": "relu"},  # not gelu: the feed-forward runs transformers' modules
    "one-layer": {"num_hidden_layers": 1},  # with cls pooling the only layer is the first-token-only last one
}
CASES = [(name, "cls", "cpu-chunks") for name in CONFIGS] + [
    ("v3", "mean", "cpu-chunks"), ("v3", "cls", "one-chunk"), ("v3", "mean", "one-chunk"),
    ("log-buckets", "cls", "one-chunk")]


@pytest.mark.parametrize("config,pooling,chunking", CASES, ids=["-".join(case) for case in CASES])
def test_rewards_and_gradients_match_transformers(config, pooling, chunking, monkeypatch):
    if chunking == "one-chunk":  # what CUDA runs: the whole batch padded to its longest sequence
        monkeypatch.setattr(fast_deberta, "CPU_MAX_SCORES", None)
    else:  # small chunks: the 60s share one, the rest go alone
        monkeypatch.setattr(fast_deberta, "CPU_MAX_SCORES", 3 * 2 * 60 ** 2)
    hf = tiny_model(**CONFIGS[config]).train()
    fast, slow = RewardModel(hf, pooling), RewardModel(hf, pooling, fast=False)
    assert fast.fast and not slow.fast
    ids, mask = batch()
    got, got_grads = rewards_and_grads(fast, ids, mask)
    want, want_grads = rewards_and_grads(slow, ids, mask)
    assert got.std() > 0.1  # the rewards differ, so matching each one means something
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got_grads.keys() == want_grads.keys()
    # absolute tolerance from the largest gradient: some are zero in theory (a bias added to every score of a
    # row cancels in the softmax) and both sides then hold rounding noise
    atol = 1e-5 * max(grad.abs().max().item() for grad in want_grads.values())
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-3, atol=atol, msg=lambda m: f"{name}: {m}")


def test_inference_matches_and_padding_does_not_change_a_reward():
    hf = tiny_model(seed=1).eval()
    fast, slow = RewardModel(hf, "cls"), RewardModel(hf, "cls", fast=False)
    ids, mask = batch(seed=1)
    with torch.inference_mode():
        torch.testing.assert_close(fast(ids, mask), slow(ids, mask), rtol=1e-4, atol=1e-4)
        alone = torch.cat([fast(ids[i:i + 1, :n], mask[i:i + 1, :n]) for i, n in enumerate(LENGTHS)])
        torch.testing.assert_close(alone, fast(ids, mask), rtol=1e-5, atol=1e-5)


def test_left_padding_and_unsupported_configs_use_the_transformers_forward(monkeypatch):
    hf = tiny_model(seed=2).eval()
    calls = []
    monkeypatch.setattr(fast_deberta, "rewards", lambda *a: calls.append(1) or torch.zeros(len(LENGTHS)))
    ids, mask = batch(seed=2)
    model = RewardModel(hf, "cls")
    with torch.inference_mode():
        model(ids.flip(1), mask.flip(1))  # left padding: the first token of a row may be padding
        assert not calls
        model(ids, mask)
        assert calls
    for overrides in ({"position_biased_input": True}, {"conv_kernel_size": 3}, {"type_vocab_size": 2},
                      {"relative_attention": False}):
        assert not RewardModel(tiny_model(**overrides), "cls").fast, overrides


def test_chunks_group_similar_lengths_within_the_score_budget():
    order, chunks = plan([5, 60, 60, 58, 40, 1], heads=2, max_scores=3 * 2 * 60 ** 2,
                                      device=torch.device("cpu"))
    assert order == [1, 2, 3, 4, 0, 5]  # longest first, stable
    assert [(c.count, c.width) for c in chunks] == [(3, 60), (1, 40), (1, 5), (1, 1)]
    assert chunks[0].rows.tolist() == list(range(178)) and chunks[1].rows is None  # 60 + 60 + 58 of 3 x 60
    assert (chunks[0].start, chunks[0].end, chunks[1].start, chunks[3].end) == (0, 178, 178, 224)
    assert len(plan([5, 60, 60, 58, 40, 1], 2, None, torch.device("cpu"))[1]) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gather_last_moves_16_bit_scores_as_bits_without_a_cast(dtype):
    from torch.profiler import profile

    from rewardkit.modeling.fast.ops import GatherLast

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 9, 17, generator=gen).to(dtype).requires_grad_()
    index = torch.randint(0, 17, (9, 9), generator=gen).expand(6, 9, 9)  # stride 0 over batch, as the forward has
    with profile() as prof:
        out = GatherLast.apply(x, index)
    assert out.dtype == dtype and torch.equal(out, torch.gather(x.detach(), -1, index))
    # torch's CPU gather of a bf16 tensor round-trips it through fp32: two full-size copies the bits do not need
    assert not [e.key for e in prof.key_averages() if e.key in ("aten::copy_", "aten::_to_copy")]
    grad = torch.randn(out.shape, generator=gen).to(dtype)
    out.backward(grad)
    expected = torch.zeros(x.shape, dtype=dtype).scatter_add_(-1, index, grad)  # the plain torch backward
    assert torch.equal(x.grad, expected)


def test_a_bf16_forward_hands_bmm_contiguous_per_head_queries_keys_and_values():
    from torch.profiler import profile

    model = tiny_model(num_hidden_layers=1)
    heads, dim, n = 2, 16, 40
    ids, mask = pad([torch.randint(4, 300, (n,), generator=torch.Generator().manual_seed(0)).tolist()], pad_id=0)
    with profile(record_shapes=True) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        fast_deberta.rewards(model, ids, mask, "mean")

    def under_matmul(event) -> bool:
        parent = event.cpu_parent
        while parent is not None and parent.name not in ("aten::bmm", "aten::baddbmm"):
            parent = parent.cpu_parent
        return parent is not None

    # a bf16 bmm copies the interleaved (heads, n, dim) views of the fused q/k/v output at each use
    copied = [e.input_shapes[0] for e in prof.events() if e.name == "aten::clone" and under_matmul(e)]
    assert not [shape for shape in copied if sorted(shape) == sorted([heads, n, dim])], copied
