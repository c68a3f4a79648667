"""Pairwise metrics: accuracy over all pairs (ties ½), calibration, the length-bias checks, reward histograms."""
from __future__ import annotations

import numpy as np
import torch

from rewardkit.modeling.objective import bt_loss_per_pair, pair_correct


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Accuracy over all pairs, ties counted ½."""
    return pair_correct(chosen, rejected).mean().item()


def calibration(chosen: torch.Tensor, rejected: torch.Tensor, bins: int) -> tuple[float, list[dict]]:
    """ECE of p = σ(r⁺ − r⁻) read as a binary classifier of which answer is preferred.

    Confidence is max(p, 1 − p) and a pair is correct when the side it favours is the chosen one (½ on a tie),
    so this is the usual top-label ECE: Σ_b n_b/N · |accuracy_b − confidence_b| over equal-width bins of [½, 1].
    """
    p = torch.sigmoid((chosen - rejected).double())
    confidence = torch.maximum(p, 1 - p)
    correct = pair_correct(chosen, rejected)
    index = ((confidence - 0.5) * 2 * bins).long().clamp_(0, bins - 1)
    ece, rows = 0.0, []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if n == 0:
            continue
        conf, acc = confidence[mask].mean().item(), correct[mask].mean().item()
        ece += n / len(p) * abs(acc - conf)
        rows.append({"bin": b, "confidence": conf, "accuracy": acc, "pairs": n})
    return ece, rows


def length_split(length_diff: torch.Tensor, correct: torch.Tensor) -> dict:
    """Accuracy where the chosen answer is the longer one vs the shorter one (length_diff = chosen − rejected)."""
    out = {}
    for name, mask in (("accuracy_chosen_longer", length_diff > 0), ("accuracy_chosen_shorter", length_diff < 0)):
        out[name] = correct[mask].mean().item() if mask.any() else None
        out[name.replace("accuracy", "pairs")] = int(mask.sum())
    return out


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor, margins: torch.Tensor, length_diff: torch.Tensor,
                 bins: int) -> tuple[dict, list[dict]]:
    """The evaluation metrics of scored pairs, and the calibration curve's bins.

    The "longer answer wins" baseline is scored on the same pairs, ties ½, so the accuracy can be read against it.
    """
    correct = pair_correct(chosen, rejected)
    longer_wins = pair_correct(length_diff, torch.zeros_like(length_diff))
    ece, curve = calibration(chosen, rejected, bins)
    rewards = torch.cat([chosen, rejected])
    metrics = {
        "pairs": len(chosen),
        "accuracy": correct.mean().item(),
        "tie_rate": (chosen == rejected).double().mean().item(),
        "mean_margin": (chosen - rejected).mean().item(),
        "loss": bt_loss_per_pair(chosen, rejected, margins).mean().item(),
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item(),
        "ece": ece,
        "baseline_longer_wins_accuracy": longer_wins.mean().item(),
        **length_split(length_diff, correct),
    }
    return metrics, curve


def reward_histogram(chosen: torch.Tensor, rejected: torch.Tensor, bins: int = 30) -> list[dict]:
    """Rows {reward (bin centre), chosen, rejected}: counts of each side's rewards over shared equal-width bins."""
    edges = np.linspace(min(chosen.min(), rejected.min()).item(), max(chosen.max(), rejected.max()).item() + 1e-6,
                        bins + 1)
    c, _ = np.histogram(chosen.numpy(), edges)
    r, _ = np.histogram(rejected.numpy(), edges)
    centres = (edges[:-1] + edges[1:]) / 2
    return [{"reward": round(float(x), 4), "chosen": int(a), "rejected": int(b)} for x, a, b in zip(centres, c, r)]
