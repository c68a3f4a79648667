"""The benchmarks' scoring rules on hand-made rows, every expected number worked out here by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rewardkit.errors import UserError
from rewardkit.evaluation.benchmarks import best_of_n, rewardbench2_scores, rmbench_scores, style_matrix


def test_rm_bench_matrix_levels_per_domain_and_overall():
    chosen = np.array([[3, 2, 1], [0, 0, 0], [1, 1, 1], [9, 9, 9]], dtype=float)
    rejected = np.array([[2.5, 1.5, 0.5], [1, 1, 0], [0, 0, 2], [0, 0, 0]], dtype=float)
    # chat rows: A gives [[1,1,1],[0,1,1],[0,0,1]]; B all 0 (0 > 0 is a tie: wrong, as in RM-Bench)
    assert style_matrix(chosen[:2], rejected[:2]).tolist() == [[.5, .5, .5], [0, .5, .5], [0, 0, .5]]
    scores = rmbench_scores(chosen, rejected, ["chat", "chat", "safety-refuse", "other"])
    assert scores["chat"] == pytest.approx({"hard": 0.5, "normal": 0.5, "easy": 0.0, "average": 1 / 3, "rows": 2})
    # safety row C: every chosen 1 beats rejected 0, 0 and loses to 2 -> rows [1, 1, 0]
    assert scores["safety"] == pytest.approx({"hard": 1 / 3, "normal": 2 / 3, "easy": 1.0, "average": 2 / 3,
                                              "rows": 1})
    assert scores["hard"] == pytest.approx(5 / 12) and scores["normal"] == pytest.approx(7 / 12)
    assert scores["easy"] == pytest.approx(0.5) and scores["average"] == pytest.approx(0.5)
    assert scores["rows_outside_domains"] == 1 and "math" not in scores  # the "other" row counts nowhere


def test_rm_bench_without_domains_is_one_matrix():
    scores = rmbench_scores(np.array([[3.0, 2, 1]]), np.array([[2.5, 1.5, 0.5]]), None)
    # [[1,1,1],[0,1,1],[0,0,1]]: every upper and diagonal cell right, every lower one wrong
    assert scores == pytest.approx({"hard": 1.0, "normal": 1.0, "easy": 0.0, "average": 2 / 3, "rows": 1})
    with pytest.raises(UserError, match="no row has an RM-Bench domain"):
        rmbench_scores(np.zeros((1, 3)), np.zeros((1, 3)), ["travel"])


def test_best_of_n_shares_a_tie_at_the_top():
    assert (best_of_n([2, 1, 0, 1]), best_of_n([1, 2, 0, 0]), best_of_n([2, 2, 1, 0]), best_of_n([1, 1, 1, 1])) == (
        1.0, 0.0, 0.5, 0.25)


def test_rewardbench2_subsets_ties_rule_and_score():
    rows = [{"subset": "Factuality", "id": "0", "num_correct": 1, "scores": [2, 1, 0, 1]},
            {"subset": "Factuality", "id": "1", "num_correct": 1, "scores": [1, 2, 0, 0]},
            {"subset": "Factuality", "id": "2", "num_correct": 1, "scores": [2, 2, 1, 0]},
            {"subset": "Math", "id": "3", "num_correct": 1, "scores": [0, 1, 1, 1]},
            {"subset": "Ties", "id": "ref:1", "num_correct": 1, "scores": [3, 1, 2]},
            {"subset": "Ties", "id": "tied:1", "num_correct": 2, "scores": [4, 3.9, 3, 1]},
            {"subset": "Ties", "id": "ref:2", "num_correct": 1, "scores": [1, 2]},
            {"subset": "Ties", "id": "tied:2", "num_correct": 2, "scores": [5, 1, 0]}]
    scores = rewardbench2_scores(rows)
    assert scores["Factuality"] == {"score": 0.5, "rows": 3} and scores["Math"] == {"score": 0.0, "rows": 1}
    # ref:1 gap 3-2=1 (right), ref:2 gap -1 (wrong); tied:1 spread .1 gap .9, tied:2 spread 4 gap 1 (both right)
    # preferred: .9 > .1 yes, 1 > 4 no; hard: min(1, .9) > .1 yes, min(-1, 1) > 4 no
    margin = (math.tanh(0.9 / 0.1 - 1) + math.tanh(-1 / 4 - 1)) / 2
    ties = scores["Ties"]
    assert ties == pytest.approx({"score": 0.3 * 1 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.5 + 0.01 * margin,
                                  "ref_accuracy": 0.5, "tied_accuracy": 1.0, "correctness_preferred": 0.5,
                                  "correctness_preferred_hard": 0.5, "margin_score": margin, "rows": 4})
    assert scores["Score"] == pytest.approx((0.5 + 0.0 + ties["score"]) / 3)


def test_rewardbench2_ties_rows_need_the_shipped_ids():
    with pytest.raises(UserError, match="ids 'ref:N' or 'tied:N'"):
        rewardbench2_scores([{"subset": "Ties", "id": "17", "num_correct": 1, "scores": [1, 0]}])
