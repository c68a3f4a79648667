"""The Bradley–Terry objective and the pairwise metrics, shared by train, evaluate and scoring."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bt_loss_per_pair(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                     center_coef: float = 0.0) -> torch.Tensor:
    """ℓ = -log σ(r⁺ − r⁻ − m) + c·(r⁺ + r⁻)², per pair (m: optional margin, c: reward-centering coefficient)."""
    diff = chosen - rejected if margin is None else chosen - rejected - margin
    loss = -F.logsigmoid(diff)
    return loss + center_coef * (chosen + rejected) ** 2 if center_coef else loss


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
            center_coef: float = 0.0) -> torch.Tensor:
    """L = -E[log σ(r⁺ − r⁻ − m)] + c·E[(r⁺ + r⁻)²]."""
    return bt_loss_per_pair(chosen, rejected, margin, center_coef).mean()


def pair_correct(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """1 where the chosen answer scores higher, ½ on a tie, 0 otherwise."""
    return (chosen > rejected).double() + 0.5 * (chosen == rejected).double()


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
