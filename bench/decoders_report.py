"""What bench/decoders.py prints (#26): the trainers' table, the FLOPs each side spends per pair, each side's share
of the GEMM ceiling at the model's shapes, and the verdicts.

FLOPs of a Llama-architecture classifier, counted from sequence lengths (training = 3x forward: the backward does
the input and the weight gradient of every matmul):
- token-wise matmuls: 2 x (q, k, v, o, gate, up, down weights of every layer + the score head) per token;
- attention: 4 x hidden x layers per (query, key) pair (q.k^T and probs.v).
Ours shares each pair's prompt: P + C + R tokens, the answers attending the prompt and themselves (causal). TRL's
RewardTrainer runs the prompt twice, P + C and P + R, each causal; as executed it also pads every sequence to its
micro-batch's longest, and sdpa with a padding mask computes every (query, key) slot. At equal FLOP/s the best
ratio over TRL anyone can reach is TRL's FLOPs per pair over ours (the bound line).
"""
from __future__ import annotations

from typing import Sequence

Lengths = Sequence[tuple[int, int, int]]  # per pair: (shared prompt tokens, chosen answer tokens, rejected answer tokens)


def matmul_params(config) -> int:
    """Weights of the token-wise matmuls: per layer q, k, v, o (grouped-query k/v) and gate, up, down; + score."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    kv = config.num_key_value_heads * head_dim
    per_layer = hidden * q + 2 * hidden * kv + q * hidden + 3 * hidden * inter
    return config.num_hidden_layers * per_layer + hidden * config.num_labels


def training_flops(config, tokens: float, attended: float) -> float:
    """Forward + backward FLOPs of `tokens` token slots and `attended` (query, key) pairs."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    width = config.num_attention_heads * head_dim
    return 3 * (2 * matmul_params(config) * tokens + 4 * width * config.num_hidden_layers * attended)


def pair_lengths(layout) -> list[tuple[int, int, int]]:
    """(shared prefix, chosen answer, rejected answer) tokens of each pair group of a packed forward."""
    import torch

    kept = layout.group >= 0
    slots = layout.group[kept] * 3 + layout.answer[kept]
    counts = torch.bincount(slots, minlength=3 * (int(layout.group.max()) + 1)).reshape(-1, 3)
    return [tuple(map(int, row)) for row in counts]


def causal(n: int) -> int:
    """(query, key) pairs of one causal sequence of n tokens."""
    return n * (n + 1) // 2


def ours_flops_per_pair(config, lengths: Lengths) -> float:
    """Mean FLOPs per pair with the prompt computed once (no padding)."""
    return sum(training_flops(config, p + c + r, causal(p) + (c + r) * p + causal(c) + causal(r))
               for p, c, r in lengths) / len(lengths)


def trl_flops_per_pair(config, lengths: Lengths) -> float:
    """Mean FLOPs per pair with the prompt in both sequences (no padding)."""
    return sum(training_flops(config, 2 * p + c + r, causal(p + c) + causal(p + r))
               for p, c, r in lengths) / len(lengths)


def executed_flops(config, slots: int, sq_slots: int) -> float:
    """FLOPs of padded/packed rows as run: every token slot, every (query, key) slot of a row (dense sdpa)."""
    return training_flops(config, slots, sq_slots)


def llama_gemms(config, rows: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of one layer's token-wise matmuls at `rows` tokens, as transformers' Llama runs them: q, k, v and
    o projections, gate, up (each hidden x intermediate) and down."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    return [(rows, hidden, q), (rows, hidden, kv), (rows, hidden, kv), (rows, q, hidden),
            (rows, hidden, inter), (rows, hidden, inter), (rows, inter, hidden)]


def params(config) -> int:
    """All parameters of the classifier `config` describes (built on the meta device: no memory)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return sum(p.numel() for p in model.parameters())


def measure_ceilings(config, rows: int, precisions: Sequence[str]) -> dict:
    """GFLOP/s per precision of one layer's matmuls (forward + backward, `llama_gemms`) at `rows` tokens on 2
    threads, best of 3 (bench.system.model_gemm_peak)."""
    import torch

    from bench import system

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {p: system.model_gemm_peak(llama_gemms(config, rows), True, 2, 3, dtype=dtypes[p]) for p in precisions}


def bound_line(trl_per_pair: float, ours_per_pair: float, trl_share: float, target: float = 3.0) -> str:
    """The best ratio over TRL reachable at TRL's efficiency, and at 100% of the ceiling, against `target`."""
    bound = trl_per_pair / ours_per_pair
    cap = bound / trl_share
    verdict = ("reachable at equal efficiency" if bound >= target else
               f"unreachable at equal efficiency (would need {target / bound:.2f}x TRL's FLOP/s"
               + (", more than the ceiling allows)" if cap < target else ")"))
    return (f"bound: TRL {trl_per_pair / 1e9:.1f} / ours {ours_per_pair / 1e9:.1f} GFLOP per pair = {bound:.2f}x "
            f"at equal efficiency; {cap:.2f}x with ours at 100% of the ceiling (TRL at {100 * trl_share:.0f}%): "
            f"{target:g}x {verdict}")


def flops_rows(config, results: dict, ceilings: dict, steps: int, batch: int) -> list[str]:
    """Per trainer: FLOPs per pair (useful, from the shared run's lengths; as executed), GFLOP/s, share of the
    ceiling of its precision; then one bound line per precision that has ours shared and TRL."""
    lines = ["| trainer | useful GFLOP/pair | executed GFLOP/pair | executed GFLOP/s | ceiling GFLOP/s | "
             "share of ceiling |", "|---|---:|---:|---:|---:|---:|"]
    bounds = []
    for precision, ceiling in ceilings.items():
        tag = "" if precision == "fp32" else f" {precision}"
        shared, trl = results.get(f"ours shared{tag}"), results.get(f"trl{tag}")
        if not shared or "lengths" not in shared[0]:
            continue
        useful = {"ours": ours_flops_per_pair(config, shared[0]["lengths"]),
                  "trl": trl_flops_per_pair(config, shared[0]["lengths"])}
        shares = {}
        for name in (f"ours shared{tag}", f"ours unshared{tag}", f"trl{tag}"):
            if name not in results or "slots" not in results[name][0]:
                continue
            r = results[name][0]
            executed = executed_flops(config, r["slots"], r["sq_slots"]) / (steps * batch)
            rate = executed * r["pairs_per_s"] / 1e9
            shares[name] = rate / ceiling
            once = name.startswith("ours shared")  # our unshared path runs the prompt twice, as TRL
            lines.append(f"| {name} | {useful['ours' if once else 'trl'] / 1e9:.1f}"
                         f"{' (prompt once)' if once else ' (prompt twice)'} | "
                         f"{executed / 1e9:.1f} | {rate:.1f} | {ceiling:.1f} | {100 * shares[name]:.0f}% |")
        if trl and f"trl{tag}" in shares:
            trl_executed = executed_flops(config, trl[0]["slots"], trl[0]["sq_slots"]) / (steps * batch)
            bounds.append(f"{precision} {bound_line(trl_executed, useful['ours'], shares[f'trl{tag}'])}")
    return lines + [""] + [f"- {b}" for b in bounds]


def tokens_per_s(r: dict, steps: int) -> float:
    """Real tokens of the timed steps per second; from s_per_step, which every trainer's JSON line has."""
    return r["tokens"] / (r["s_per_step"] * steps)


def training_rows(results: dict, steps: int) -> list[str]:
    lines = ["| trainer | pairs/s | tokens-of-work/s | tokens computed / of work | row slots / of work | "
             "peak RSS MB |", "|---|---:|---:|---:|---:|---:|"]
    for name, (r, rss) in results.items():
        computed = f"{r['computed'] / r['tokens']:.2f}" if "computed" in r else "1.00 (padded)"
        slots = f"{r['slots'] / r['tokens']:.2f}" if "slots" in r else "-"
        lines.append(f"| {name} | {r['pairs_per_s']:.3f} | {tokens_per_s(r, steps):.1f} | {computed} | "
                     f"{slots} | {rss:,.0f} |")
    return lines


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def verdicts(results: dict, best: dict | None, steps: int, pairs: int, precisions: Sequence[str]) -> list[str]:
    """The #26 targets, per precision run: sharing over unshared (tokens-of-work/s), ours over TRL (pairs/s,
    same precision), best-of-n."""
    out = []
    for precision in precisions:
        tag = "" if precision == "fp32" else f" {precision}"
        shared, plain, trl = (results.get(f"{n}{tag}") for n in ("ours shared", "ours unshared", "trl"))
        if shared and plain:
            ratio = tokens_per_s(shared[0], steps) / tokens_per_s(plain[0], steps)
            out.append(f"target prefix sharing >= 1.3x tokens-of-work/s over unshared ({precision}): {ratio:.2f}x, "
                       f"{met(ratio >= 1.3)}")
        if shared and trl:
            ratio = shared[0]["pairs_per_s"] / trl[0]["pairs_per_s"]
            out.append(f"target ours >= 3x TRL pairs/s ({precision}): {ratio:.2f}x, {met(ratio >= 3)} (TRL kept "
                       f"{trl[0]['kept_pairs']} of the {pairs} pairs: it drops pairs longer than max length, ours "
                       "truncates)")
    if best:
        out.append(f"target best-of-{len(best['lengths'])} shared >= 2.5x the full sequences: "
                   f"{best['shared_s']:.3f} s vs {best['unshared_s']:.3f} s = {best['speedup']:.2f}x, "
                   f"{met(best['speedup'] >= 2.5)} (sequence lengths {best['lengths']}, rewards within "
                   f"{best['max_abs_diff']:.1e})")
    return out
