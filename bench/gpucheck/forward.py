"""Check 2: our fast forward (rewardkit.modeling.fast: no work on padding) against transformers' own forward of
the same weights, on the device: rewards of a right-padded batch, and the gradients of their sum with respect to
every weight. In fp32 (TF32 off) the two differ by summation order only; under bf16 autocast by bf16 rounding."""
from __future__ import annotations

import torch

from bench.gpucheck.common import Row, Setup, base
from rewardkit.modeling.devices import autocast
from rewardkit.modeling.model import RewardModel
from rewardkit.modeling.packing import batch_for

TOLERANCES = {"fp32": (1e-4, 1e-3), "bf16": (0.02, 0.05)}  # (rewards: of max(|r|, 1); gradients: of max |g|)


def rewards_and_grads(model: RewardModel, inputs, lengths: list[int] | None, precision: str, device):
    model.zero_grad(set_to_none=True)
    with autocast(device, precision):
        rewards = model(*inputs, **({"lengths": lengths} if lengths is not None else {})).float()
    rewards.sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return rewards.detach(), grads


def compare(setup: Setup, precision: str) -> dict:
    ours, tokenizer = base(setup)
    theirs = RewardModel(ours.hf, ours.pooling, fast=False)  # the same weights, transformers' forward
    sequences, segments = setup.pairs.sequences(range(min(len(setup.pairs), setup.batch)))
    inputs = batch_for(ours, sequences, tokenizer.pad_token_id, 8, segments).to(setup.device)
    lengths = [len(s) for s in sequences]
    fast, fast_grads = rewards_and_grads(ours, inputs, lengths, precision, setup.device)
    ref, ref_grads = rewards_and_grads(theirs, inputs, None, precision, setup.device)
    grad_gap = max((fast_grads[n] - g).abs().max().item() for n, g in ref_grads.items())
    grad_scale = max(g.abs().max().item() for g in ref_grads.values())
    return {"reward_gap": (fast - ref).abs().max().item(), "reward_scale": max(ref.abs().max().item(), 1.0),
            "grad_gap": grad_gap, "grad_scale": grad_scale, "same_grads": set(fast_grads) == set(ref_grads),
            "fast": ours.fast or ours.fast_bert}


def run(setup: Setup, precision: str) -> Row:
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False  # TF32 would round fp32 matmuls to 10 mantissa bits
    try:
        c = compare(setup, precision)
    finally:
        matmul.allow_tf32 = saved
    reward_tol, grad_tol = TOLERANCES[precision]
    ok = (c["fast"] and c["same_grads"] and c["reward_gap"] <= reward_tol * c["reward_scale"]
          and c["grad_gap"] <= grad_tol * c["grad_scale"])
    return Row.judged(f"fast vs transformers forward, {precision}", ok,
                      f"rewards max |diff| {c['reward_gap']:.2e}; gradients max |diff| {c['grad_gap']:.2e} "
                      f"(largest |g| {c['grad_scale']:.2e})",
                      f"rewards <= {reward_tol:g} x max(|r|, 1); gradients <= {grad_tol:g} x max |g|",
                      "" if c["fast"] else "the fast forward does not cover this model", **c)
