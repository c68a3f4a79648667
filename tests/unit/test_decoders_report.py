"""bench/decoders_report.py: the FLOP count of a Llama classifier by hand, the per-pair counts of ours (prompt once)
and TRL (prompt twice), the packed pair lengths read from a layout, and the bound line."""
from types import SimpleNamespace

import pytest
import torch

from bench import decoders_report as report

# hidden 8, 2 layers, 2 heads of 4, 1 KV head, intermediate 16, one label
TINY = SimpleNamespace(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, num_labels=1)


def test_matmul_params_of_a_tiny_llama_are_the_hand_count():
    # per layer: q 8x8 = 64, k and v 8x4 = 32 each, o 64, gate/up/down 8x16 = 128 each -> 576; 2 layers + score 8
    assert report.matmul_params(TINY) == 2 * 576 + 8 == 1160


def test_matmul_params_match_transformers_llama():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=0)
    model = LlamaForSequenceClassification(config)
    matmuls = sum(p.numel() for n, p in model.named_parameters() if n.endswith("proj.weight") or n == "score.weight")
    assert report.matmul_params(config) == matmuls == 1160
    assert report.params(config) == sum(p.numel() for p in model.parameters())


def test_ours_flops_per_pair_are_the_hand_count_with_the_prompt_once():
    # prompt 3, chosen 2, rejected 1: 6 tokens; attended pairs: prompt 3*4/2 = 6, chosen 2*3 + 2*3/2 = 9,
    # rejected 1*3 + 1 = 4 -> 19; forward 2*1160*6 + 4*8*2*19 = 13920 + 1216 = 15136; training x3
    assert report.ours_flops_per_pair(TINY, [(3, 2, 1)]) == 45408


def test_trl_flops_per_pair_are_the_hand_count_with_the_prompt_twice():
    # sequences of 5 and 4 tokens: 9 tokens, 15 + 10 = 25 pairs; forward 2*1160*9 + 4*8*2*25 = 20880 + 1600
    assert report.trl_flops_per_pair(TINY, [(3, 2, 1)]) == 3 * 22480


def test_a_longer_prompt_costs_ours_its_tokens_once_and_trl_twice():
    lengths, longer = [(100, 5, 7)], [(101, 5, 7)]
    per_token = 3 * 2 * report.matmul_params(TINY)
    width = 3 * 4 * 8 * 2  # training FLOPs of one attended (query, key) pair
    # one more prompt token: itself once, 101 prompt keys, and one more key for each of the 12 answer tokens
    assert report.ours_flops_per_pair(TINY, longer) - report.ours_flops_per_pair(TINY, lengths) == \
        per_token + width * (101 + 12)
    assert report.trl_flops_per_pair(TINY, longer) - report.trl_flops_per_pair(TINY, lengths) == \
        2 * per_token + width * (106 + 108)


def test_pair_lengths_are_read_from_a_packed_layout():
    from rewardkit.modeling.packing import pack, pair_groups

    prompt = list(range(20))
    # pair 0: prompt + 3 / + 2 tokens; pair 1: a 17-token prompt + 1 / + 10 tokens
    chosen = [prompt + [50, 51, 52], prompt[:17] + [60]]
    rejected = [prompt + [53, 54], prompt[:17] + list(range(70, 80))]
    packed = pack(chosen + rejected, 99, pair_groups(2))
    assert sorted(report.pair_lengths(packed.layout)) == [(17, 1, 10), (20, 3, 2)]


def test_executed_flops_count_every_slot():
    assert report.executed_flops(TINY, 10, 100) == report.training_flops(TINY, 10, 100) == \
        3 * (2 * 1160 * 10 + 4 * 8 * 2 * 100)


def test_bound_line_says_unreachable_when_the_flops_ratio_is_under_the_target():
    line = report.bound_line(2.4e9, 1e9, 0.5)
    assert "TRL 2.4 / ours 1.0 GFLOP per pair = 2.40x" in line
    assert "4.80x with ours at 100% of the ceiling (TRL at 50%)" in line
    assert "3x unreachable at equal efficiency (would need 1.25x TRL's FLOP/s)" in line
    assert "more than the ceiling" not in line
    assert "more than the ceiling allows" in report.bound_line(2.4e9, 1e9, 0.9)  # 2.67x even at 100%
    assert "3x reachable at equal efficiency" in report.bound_line(3.2e9, 1e9, 0.5)


def test_flops_rows_read_each_run_against_its_precisions_ceiling():
    lengths = [(3, 2, 1)] * 2
    results = {"ours shared": ({"lengths": lengths, "slots": 16, "sq_slots": 128, "pairs_per_s": 2.0}, 0.0),
               "trl": ({"slots": 40, "sq_slots": 400, "pairs_per_s": 1.0}, 0.0)}
    lines = report.flops_rows(TINY, results, {"fp32": 1e-3}, steps=1, batch=2)
    ours = report.executed_flops(TINY, 16, 128) / 2
    trl = report.executed_flops(TINY, 40, 400) / 2
    assert lines[2].startswith("| ours shared | 0.0 (prompt once) |")
    assert lines[2].endswith(f"| {100 * ours * 2 / 1e9 / 1e-3:.0f}% |")
    assert lines[3].endswith(f"| {100 * trl / 1e9 / 1e-3:.0f}% |")
    bound = lines[-1]
    assert bound.startswith("- fp32 bound:")
    assert f"= {trl / report.ours_flops_per_pair(TINY, lengths):.2f}x at equal efficiency" in bound


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_measure_ceilings_gives_a_rate_per_precision(precision):
    torch.manual_seed(0)
    ceilings = report.measure_ceilings(TINY, 32, [precision])
    assert set(ceilings) == {precision} and ceilings[precision] > 0
