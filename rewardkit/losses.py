"""The Bradley–Terry objective, shared by training, the training-set pass and evaluation."""
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
