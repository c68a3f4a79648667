"""RM-Bench and RewardBench 2 files, shaped as those projects ship them, as extra sets: no row rejected, each
answer scored once, its reward in scores.jsonl, and the benchmark's numbers computed from those rewards."""
from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from rewardkit.config import EvaluateConfig, ValidateConfig, build
from rewardkit.errors import UserError
from rewardkit.evaluation import answer_scores
from rewardkit.evaluation.job import evaluate_model
from rewardkit.evaluation.summary import WIDTH, summary_lines
from tests.conftest import easy_rows, evaluate_paths, read_jsonl, train_in_process

DATA = Path(__file__).resolve().parents[1] / "data"
TRAIN = {"max_length": 64, "batch_size": 8, "epochs": 1, "lr": 1e-2, "warmup_ratio": 0.0, "checkpoint_every": 0}


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_base):
    work = train_in_process(tmp_path_factory.mktemp("benchmarks"), tiny_base, easy_rows(32, seed=1),
                            easy_rows(16, seed=2), train=TRAIN)
    for name in ("rmbench_sample.json", "rewardbench2_sample.jsonl"):
        shutil.copy(DATA / name, work / "eval_sets" / name)
    return work


def evaluate(work: Path, extra_sets: dict) -> dict:
    params = {"evaluate": {"batch_size": 4, "calibration_bins": 10, "extra_sets": extra_sets}}
    return evaluate_model(evaluate_paths(work), build(EvaluateConfig, params), ValidateConfig(), device="cpu")


def rewards_by_row(path: Path) -> dict[int, dict[str, list[float]]]:
    rows: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"chosen": [], "rejected": []})
    for record in read_jsonl(path):
        side = rows[record["row"]][record["side"]]
        assert record["answer"] == len(side)  # answers in order, each once
        side.append(record["reward"])
    return rows


def test_rm_bench_and_rewardbench2_files_as_shipped(work, monkeypatch):
    scored = []
    real = answer_scores.score_sequences
    monkeypatch.setattr(answer_scores, "score_sequences", lambda m, seqs, *a, **k: scored.append(len(seqs)) or
                        real(m, seqs, *a, **k))
    metrics = evaluate(work, {"rmb": f"{work}/eval_sets/rmbench_sample.json",
                              "rb2": f"{work}/eval_sets/rewardbench2_sample.jsonl"})["extra_sets"]
    rmb, rb2 = metrics["rmb"], metrics["rb2"]
    assert rmb["validate"]["rejected"] == 0 and rb2["validate"]["rejected"] == 0
    assert (rmb["scoring"], rb2["scoring"]) == ("rmbench", "rewardbench2")
    assert (rmb["pairs"], rmb["validate"]["pairs"], rb2["pairs"]) == (72, 72, 3 * 7 + 9 + 3 + 6 + 3)
    assert scored == [8 * 6, 7 * 4 + 6 + 4 + 5 + 4]  # each distinct answer once, not once per pair

    rows = rewards_by_row(work / "data/extra_sets/rmb/scores.jsonl")
    source = json.loads((work / "eval_sets/rmbench_sample.json").read_text())
    # RM-Bench's own loop (scripts/utils.py compute_accuracy), per domain
    per_domain = {}
    for domain in ("chat", "code", "math", "safety"):
        members = [k for k, r in enumerate(source) if r["domain"].startswith(domain)]
        matrix = np.zeros((3, 3))
        for k in members:
            for i in range(3):
                for j in range(3):
                    matrix[i][j] += rows[k]["chosen"][i] > rows[k]["rejected"][j]
        matrix /= len(members)
        per_domain[domain] = (np.triu(matrix, 1).sum() / 3, np.diag(matrix).mean(), np.tril(matrix, -1).sum() / 3)
        assert rmb["rmbench"][domain]["hard"] == pytest.approx(per_domain[domain][0], abs=1e-6)
        assert rmb["rmbench"][domain]["easy"] == pytest.approx(per_domain[domain][2], abs=1e-6)
    assert rmb["rmbench"]["average"] == pytest.approx(np.mean([np.mean(v) for v in per_domain.values()]), abs=1e-6)
    assert rmb["rmbench"]["rows_outside_domains"] == 0

    rows = rewards_by_row(work / "data/extra_sets/rb2/scores.jsonl")
    source = read_jsonl(work / "eval_sets/rewardbench2_sample.jsonl")
    math_scores = [rows[k]["chosen"] + rows[k]["rejected"] for k, r in enumerate(source) if r["subset"] == "Math"]
    expected = np.mean([1 / np.sum(np.array(s) == max(s)) if s[0] == max(s) else 0 for s in math_scores])
    assert rb2["rewardbench2"]["Math"]["score"] == pytest.approx(expected, abs=1e-6)
    assert set(rb2["rewardbench2"]) == {"Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties", "Score"}
    assert rb2["rewardbench2"]["Ties"]["rows"] == 4
    # the plain pairwise accuracy runs over every expanded pair of the same rewards
    pairs = [(c, r) for k in rows for c in rows[k]["chosen"] for r in rows[k]["rejected"]]
    assert rb2["accuracy"] == pytest.approx(np.mean([1.0 if c > r else 0.5 if c == r else 0.0 for c, r in pairs]),
                                            abs=1e-5)
    summary = summary_lines(work / "metrics")
    assert any(line.startswith("  RM-Bench: hard ") for line in summary) and all(len(x) <= WIDTH for x in summary)
    assert any(line.startswith("  RewardBench 2: Score ") for line in summary)


def test_scoring_set_explicitly_or_refused_when_the_shape_does_not_fit(work):
    metrics = evaluate(work, {"rmb": {"path": f"{work}/eval_sets/rmbench_sample.json", "scoring": "pairs"}})
    assert metrics["extra_sets"]["rmb"]["scoring"] == "pairs" and "rmbench" not in metrics["extra_sets"]["rmb"]
    with pytest.raises(UserError, match="scoring rmbench needs 3 chosen and 3 rejected answers a row.*row index 0 "
                                        "has 1 and 3"):
        evaluate(work, {"rb2": {"path": f"{work}/eval_sets/rewardbench2_sample.jsonl", "scoring": "rmbench"}})
    with pytest.raises(UserError, match="scoring: 'best' is not one of auto, rmbench, rewardbench2, pairs"):
        evaluate(work, {"rb2": {"path": f"{work}/eval_sets/rewardbench2_sample.jsonl", "scoring": "best"}})


def test_a_set_of_plain_pairs_gets_per_answer_scores_too(work):
    path = work / "eval_sets/plain.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in easy_rows(5, seed=4)))
    metrics = evaluate(work, {"plain": str(path)})["extra_sets"]["plain"]
    assert metrics["scoring"] == "pairs" and metrics["pairs"] == 5
    records = read_jsonl(work / "data/extra_sets/plain/scores.jsonl")
    assert [(r["row"], r["side"], r["answer"]) for r in records] == [
        (k, side, 0) for k in range(5) for side in ("chosen", "rejected")]
