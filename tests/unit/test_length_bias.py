"""Length bias as numbers: Spearman's rho by hand, the buckets of length difference, and the stage's outputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rewardkit.evaluation.length_bias import bucket_labels, length_bias, spearman


def test_spearman_is_pearson_of_average_ranks():
    assert spearman(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == pytest.approx(1 - 6 * 2 / (4 * 15))
    # ties share their mean rank: x ranks 1, 2.5, 2.5, 4; r = 4.5 / sqrt(4.5 * 5)
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(math.sqrt(0.9))
    assert spearman(np.array([1, 1, 1]), np.array([1, 2, 3])) is None and spearman(np.ones(1), np.ones(1)) is None


def test_a_model_that_reads_only_length_is_caught_in_every_bucket():
    chosen_chars, rejected_chars = np.array([10, 50, 200, 5, 40]), np.array([5, 100, 200, 1500, 5])
    chosen, rejected = torch.tensor(chosen_chars, dtype=torch.float32), torch.tensor(rejected_chars,
                                                                                    dtype=torch.float32)
    metrics, rows = length_bias(chosen, rejected, chosen_chars, rejected_chars)
    assert metrics["spearman_reward_length"] == pytest.approx(1.0) and metrics["answers"] == 10
    assert metrics["spearman_margin_length_diff"] == pytest.approx(1.0)
    assert metrics["by_length_diff"] == {"..-1001": {"pairs": 1, "accuracy": 0.0},
                                         "-100..-31": {"pairs": 1, "accuracy": 0.0},
                                         "0": {"pairs": 1, "accuracy": 0.5},  # equal rewards: a tie, ½
                                         "+1..30": {"pairs": 1, "accuracy": 1.0},
                                         "+31..100": {"pairs": 1, "accuracy": 1.0}}
    assert [r["order"] for r in rows] == sorted(r["order"] for r in rows)
    assert [r["baseline_longer_wins_accuracy"] for r in rows] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert bucket_labels()[rows[0]["order"]] == "..-1001"
