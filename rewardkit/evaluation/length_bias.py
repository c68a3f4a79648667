"""Length bias as numbers: does the reward follow the answer's length rather than its quality?

- `spearman_reward_length`: Spearman's rank correlation between reward and length (characters) over every held-out
  answer, chosen and rejected alike (Pearson's r of the average ranks, ties sharing their mean rank, as
  scipy.stats.spearmanr computes it); near 0 means the reward does not order answers by length.
- `spearman_margin_length_diff`: the same between the margin r⁺ − r⁻ and the length difference of each pair.
- `by_length_diff`: accuracy (ties ½) and the longer-wins baseline per bucket of the length difference chosen −
  rejected in characters (the buckets of `LENGTH_DIFF_BUCKETS`, 0 its own); a model that only reads length scores
  near 1 on the right and near 0 on the left.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rewardkit.modeling.objective import pair_correct

LENGTH_DIFF_BUCKETS = (30, 100, 300, 1000)  # upper ends of |chosen − rejected| in characters; the last is open


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho of two samples (None when one of them is constant or has fewer than 2 values)."""
    if len(x) < 2:
        return None
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def bucket_labels() -> list[str]:
    """The buckets in order, most negative first: "-1001.." ... "-30..-1", "0", "+1..30" ... "+1001.."."""
    lows = [1, *(b + 1 for b in LENGTH_DIFF_BUCKETS)]
    ups = [*LENGTH_DIFF_BUCKETS, None]
    positive = [f"+{lo}..{up}" if up else f"+{lo}.." for lo, up in zip(lows, ups)]
    negative = [f"-{up}..-{lo}" if up else f"..-{lo}" for lo, up in zip(lows, ups)]
    return [*reversed(negative), "0", *positive]


def length_bucket(diff: np.ndarray) -> np.ndarray:
    """Index into `bucket_labels()` of each length difference."""
    k = len(LENGTH_DIFF_BUCKETS) + 1
    side = np.searchsorted(LENGTH_DIFF_BUCKETS, np.abs(diff), side="left")  # 0 for 1..30, ..., k-1 for > 1000
    return np.where(diff == 0, k, np.where(diff > 0, k + 1 + side, k - 1 - side))


def length_bias(chosen: torch.Tensor, rejected: torch.Tensor, chosen_chars: np.ndarray,
                rejected_chars: np.ndarray) -> tuple[dict, list[dict]]:
    """(metrics["length_bias"], the rows of the per-bucket plot) for scored pairs and their answers' lengths."""
    rewards = torch.cat([chosen, rejected]).double().numpy()
    lengths = np.concatenate([chosen_chars, rejected_chars]).astype(np.float64)
    diff = (chosen_chars - rejected_chars).astype(np.int64)
    correct = pair_correct(chosen, rejected).numpy()
    longer_wins = np.sign(diff) * 0.5 + 0.5  # 1 chosen longer, ½ equal, 0 shorter
    frame = pd.DataFrame({"bucket": length_bucket(diff), "correct": correct, "longer_wins": longer_wins})
    stats = frame.groupby("bucket", sort=True).agg(pairs=("correct", "size"), accuracy=("correct", "mean"),
                                                   longer_wins=("longer_wins", "mean"))
    labels = bucket_labels()
    rows = [{"length_diff": labels[b], "order": int(b), "pairs": int(s.pairs), "accuracy": float(s.accuracy),
             "baseline_longer_wins_accuracy": float(s.longer_wins)} for b, s in stats.iterrows()]
    metrics = {"answers": len(rewards), "spearman_reward_length": spearman(rewards, lengths),
               "spearman_margin_length_diff": spearman((chosen - rejected).double().numpy(), diff),
               "by_length_diff": {r["length_diff"]: {k: r[k] for k in ("pairs", "accuracy")} for r in rows}}
    return metrics, rows
