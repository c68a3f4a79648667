"""The Bradley–Terry objective and the tie rule, each written once: training, the training-set pass, validation,
evaluation and its breakdowns all use these."""
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
    """The tie rule, per pair (float64): 1 where the chosen side scores higher, ½ on a tie, 0 otherwise. Any
    pairwise score goes through it: rewards, and the "longer answer wins" baseline (lengths as the scores)."""
    return (chosen > rejected).double() + 0.5 * (chosen == rejected).double()


def preferred(chosen: float, rejected: float) -> str:
    """The tie rule as a label: "chosen", "rejected" or "tie" (what the score CLI and the server report)."""
    return "chosen" if chosen > rejected else "rejected" if rejected > chosen else "tie"
