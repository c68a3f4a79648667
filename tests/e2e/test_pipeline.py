"""The whole pipeline under the real `dvc repro`, in a throw-away copy of the project, offline (scratch-tiny)."""
import json
import re

from tests.conftest import SMALL_PIPELINE, easy_rows, git, run_dvc, write_jsonl, write_params


def ran(proc) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", proc.stdout)


def metrics_files(repo) -> dict[str, bytes]:
    """Every file under metrics/ (the dvclive directories included) by its path there."""
    root = repo / "metrics"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dvc_repro_runs_four_stages_then_only_what_changed(repo_copy):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(180) + [{"prompt": "User: hi\nAssistant:"}])
    write_params(repo_copy, SMALL_PIPELINE)
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data")

    first = run_dvc(repo_copy, "repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert ran(first) == ["validate", "split", "tokenize", "train", "evaluate"]
    lock = (repo_copy / "dvc.lock").read_text()
    metrics = metrics_files(repo_copy)
    assert {"train/metrics.json", "train/plots/metrics/loss.tsv", "eval/plots/custom/calibration.json"} <= set(metrics)
    assert json.loads(metrics["validate.json"])["rejected_by_reason"]["missing_field"] == 1

    again = run_dvc(repo_copy, "repro")
    assert again.returncode == 0 and ran(again) == []
    assert "up to date" in again.stdout

    forced = run_dvc(repo_copy, "repro", "--force")  # same params and data: identical bytes, no dvc.lock churn
    assert forced.returncode == 0 and ran(forced) == ["validate", "split", "tokenize", "train", "evaluate"]
    assert (repo_copy / "dvc.lock").read_text() == lock
    assert metrics_files(repo_copy) == metrics

    write_params(repo_copy, {"evaluate": {"calibration_bins": 5}})
    proc = run_dvc(repo_copy, "repro")
    assert proc.returncode == 0 and ran(proc) == ["evaluate"]

    write_params(repo_copy, {"train": {"checkpoint_every": 7}})  # changes no result: nothing reruns
    proc = run_dvc(repo_copy, "repro")
    assert proc.returncode == 0 and ran(proc) == []

    write_params(repo_copy, {"train": {"lr": 2e-3}})  # tokenized once: an lr change reruns train and evaluate
    proc = run_dvc(repo_copy, "repro")
    assert proc.returncode == 0 and ran(proc) == ["train", "evaluate"]

    write_params(repo_copy, {"train": {"max_length": 48}})  # another encoding: tokenize reruns
    proc = run_dvc(repo_copy, "repro")
    assert proc.returncode == 0 and ran(proc) == ["tokenize", "train", "evaluate"]

    write_jsonl(repo_copy / "eval_sets/regressions.jsonl", easy_rows(20, seed=9))  # an extra evaluation set
    write_params(repo_copy, {"evaluate": {"extra_sets": {"regressions": "eval_sets/regressions.jsonl"}}})
    proc = run_dvc(repo_copy, "repro")
    assert proc.returncode == 0 and ran(proc) == ["evaluate"], proc.stdout[-2000:] + proc.stderr[-2000:]
    shown = run_dvc(repo_copy, "exp", "show", "--json")
    assert shown.returncode == 0 and '"extra_sets"' in shown.stdout and '"regressions"' in shown.stdout

    shown = run_dvc(repo_copy, "metrics", "show", "--json")
    assert shown.returncode == 0
    assert "accuracy" in shown.stdout and "train_loss" in shown.stdout and "eval_pairs" in shown.stdout
