"""The data stages under the real `dvc repro`, in a throw-away git copy of the project with a small dataset."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, run_dvc, write_params


def small_dataset(path: Path) -> None:
    """200 valid pairs over 70 prompts, plus 4 bad lines (2% rejected, under validate.max_reject_fraction)."""
    rows = [json.dumps({"prompt": f"Question {i % 70}: what moves bond yields?", "chosen": f"Rates and inflation {i}.",
                        "rejected": f"Nothing {i}.", "id": i}) for i in range(200)]
    rows[50:50] = ['{"prompt": "cut', "[1, 2]", json.dumps({"prompt": "x", "chosen": "y"}), rows[10]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_repro_runs_validate_and_split_then_nothing(repo_copy: Path) -> None:
    small_dataset(repo_copy / "dataset/test_pairs.jsonl")
    write_params(repo_copy, {"data": {"path": "dataset/test_pairs.jsonl"}})
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-q", "-m", "small dataset")

    first = run_dvc(repo_copy, "repro", "split")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'validate'" in first.stdout and "Running stage 'split'" in first.stdout
    assert "kept 200 of 204 lines" in first.stdout
    assert len((repo_copy / "data/train.jsonl").read_bytes().splitlines()) + \
        len((repo_copy / "data/eval.jsonl").read_bytes().splitlines()) == 200

    again = run_dvc(repo_copy, "repro", "split")
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout
    status = run_dvc(repo_copy, "status", "split")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout

    write_params(repo_copy, {"split": {"eval_fraction": 0.25}})
    changed = run_dvc(repo_copy, "repro", "split")
    assert changed.returncode == 0, changed.stderr
    assert "Running stage 'split'" in changed.stdout and "Running stage 'validate'" not in changed.stdout

    shown = run_dvc(repo_copy, "metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    metrics = next(iter(json.loads(shown.stdout).values()))["data"]
    validate = metrics["metrics/validate.json"]["data"]
    split = metrics["metrics/split.json"]["data"]
    assert (validate["lines_read"], validate["kept"], validate["rejected"]) == (204, 200, 4)
    assert validate["rejected_by_reason"]["duplicate"] == 1
    assert split["train_pairs"] + split["eval_pairs"] == 200 and split["prompts_on_both_sides"] == 0
    assert 50 <= split["eval_pairs"] < 50 + 3  # 0.25 of 200, off by less than one prompt group (<= 3 pairs)
