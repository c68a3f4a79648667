"""Evaluation broken down by a pair's `source` or `subset`, and RewardBench's section scores.

Per group: pairs, accuracy (ties ½), BT loss, mean margin r⁺ − r⁻ and the longer-wins baseline on the same pairs.

RewardBench (v1) reports four sections, each the mean of its subsets' accuracies weighted by the subset sizes of
the released set (`RB_EXAMPLE_COUNTS`; math-prm is weighted as if it had as many pairs as the six hep-* subsets
together), and an overall score, the plain mean of the sections present. Subsets outside `RB_SECTIONS` are left out
of the sections (they still get their own accuracy). One difference from RewardBench's script: it counts a tie as
wrong; here a tie counts ½, as everywhere in this project.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rewardkit.modeling.objective import bt_loss_per_pair, pair_correct

RB_SECTIONS = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}
RB_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46, "refusals-dangerous": 100, "refusals-offensive": 100,
    "xstest-should-refuse": 154, "xstest-should-respond": 250, "donotanswer": 136, "math-prm": 984, "hep-cpp": 164,
    "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
NO_GROUP = "(none)"


def pair_frame(chosen: torch.Tensor, rejected: torch.Tensor, margins: torch.Tensor,
               length_diff: torch.Tensor) -> pd.DataFrame:
    """One row per pair: correct (1, ½, 0), loss, margin r⁺ − r⁻, and the longer-wins baseline (ties ½)."""
    diff = (chosen - rejected).double()
    return pd.DataFrame({
        "correct": pair_correct(chosen, rejected).numpy(),
        "loss": bt_loss_per_pair(diff, torch.zeros_like(diff), margins.double()).numpy(),
        "margin": diff.numpy(),
        "longer_wins": pair_correct(length_diff, torch.zeros_like(length_diff)).numpy(),
    })


def by_group(pairs: pd.DataFrame, groups: pd.Series) -> dict[str, dict]:
    """{group: {pairs, accuracy, loss, mean_margin, baseline_longer_wins_accuracy}}, groups in name order."""
    stats = pairs.groupby(groups.fillna(NO_GROUP).to_numpy(), sort=True).agg(
        pairs=("correct", "size"), accuracy=("correct", "mean"), loss=("loss", "mean"),
        mean_margin=("margin", "mean"), baseline_longer_wins_accuracy=("longer_wins", "mean"))
    return {str(name): {k: (int(v) if k == "pairs" else float(v)) for k, v in row.items()}
            for name, row in stats.iterrows()}


def breakdowns(pairs: pd.DataFrame, columns: pd.DataFrame) -> dict:
    """`by_source` / `by_subset` for the columns some pair has a value in, and `rewardbench` when subsets are
    RewardBench's."""
    out = {}
    for name in ("source", "subset"):
        if name in columns and columns[name].notna().any():
            out[f"by_{name}"] = by_group(pairs, columns[name])
    subsets = out.get("by_subset", {})
    if any(s in RB_EXAMPLE_COUNTS for s in subsets):
        out["rewardbench"] = rewardbench_sections({s: v["accuracy"] for s, v in subsets.items()})
    return out


def rewardbench_sections(accuracy: dict[str, float]) -> dict[str, float]:
    """Section scores (accuracy 0-1) weighted by RB_EXAMPLE_COUNTS, and "Score", their mean."""
    sections = {}
    for section, subsets in RB_SECTIONS.items():
        present = [s for s in subsets if s in accuracy]
        if present:
            weights = np.array([RB_EXAMPLE_COUNTS[s] for s in present], dtype=float)
            sections[section] = float(np.dot(weights, [accuracy[s] for s in present]) / weights.sum())
    if sections:
        sections["Score"] = float(np.mean(list(sections.values())))
    return sections


def group_rows(metrics: dict, set_name: str = "eval") -> list[dict]:
    """Rows of the accuracy-per-group bar plot: every group of every breakdown, or one row for all pairs."""
    rows = [{"group": f"{set_name}: {kind.removeprefix('by_')}={group}", "accuracy": values["accuracy"],
             "pairs": values["pairs"]}
            for kind in ("by_source", "by_subset") for group, values in metrics.get(kind, {}).items()]
    return rows or [{"group": f"{set_name}: all pairs", "accuracy": metrics["accuracy"], "pairs": metrics["pairs"]}]
