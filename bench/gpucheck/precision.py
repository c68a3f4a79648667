"""Check 1: bf16 autocast training against fp32 training on the same batches (same seed, so the same order and
the same initial head): the per-step losses and the rewards the two trained models give the held-out pairs.

bf16 autocast rounds the body's matmul inputs to 8 mantissa bits; the weights, the optimizer, the head and the
loss stay fp32. Over a few steps the two runs drift apart by rounding only, so the losses must agree within
LOSS_TOL and the final rewards within REWARD_TOL of the largest fp32 reward (an absolute floor for models whose
rewards are all near 0). A bf16 path that computed something else (a head in bf16, a loss on bf16 rewards, a wrong
cast) moves them by far more."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from bench.gpucheck.common import Row, Setup, max_abs, train
from rewardkit.modeling.inference import score_sequences

LOSS_TOL = 0.02  # absolute, per step (a Bradley-Terry loss starts at ln 2 = 0.69)
REWARD_TOL = 0.05  # of max(|fp32 reward|, 1)


def held_out_rewards(setup: Setup, model, tokenizer, precision: str) -> torch.Tensor:
    """Rewards of every held-out pair's chosen then rejected sequence, scored as the evaluate stage scores."""
    sequences, segments = setup.held_out.sequences(range(len(setup.held_out)))
    model.eval()
    return score_sequences(model, sequences, tokenizer.pad_token_id, 2 * setup.batch, setup.device,
                           segments=segments, precision=precision)


def run(setup: Setup) -> Row:
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for precision in ("fp32", "bf16"):
            curve, model, tokenizer = train(setup, Path(work) / precision, precision=precision)
            results[precision] = ([r["loss"] for r in curve], held_out_rewards(setup, model, tokenizer, precision))
    (loss32, r32), (loss16, r16) = results["fp32"], results["bf16"]
    loss_gap = max(abs(a - b) for a, b in zip(loss32, loss16))
    scale = max(r32.abs().max().item(), 1.0)
    reward_gap = max_abs(r32, r16)
    ok = len(loss32) == len(loss16) == setup.steps and loss_gap <= LOSS_TOL and reward_gap <= REWARD_TOL * scale
    return Row.judged("bf16 vs fp32 training", ok, f"loss max |diff| {loss_gap:.4f} over {len(loss32)} steps; "
                      f"rewards max |diff| {reward_gap:.4f} (largest |fp32 reward| {scale:.3f})",
                      f"loss <= {LOSS_TOL}; rewards <= {REWARD_TOL} x max(|r|, 1)",
                      f"{len(r32)} held-out sequences; rewards are fp32 numbers in both",
                      fp32_losses=loss32, bf16_losses=loss16, loss_gap=loss_gap, reward_gap=reward_gap)
