"""The whole pipeline under the real `dvc repro`, in a throw-away copy of the project, offline (scratch-tiny)."""
import json
import re

import yaml

from tests.tiny import easy_rows, write_jsonl

SMALL = {"data": {"path": "dataset/small.jsonl"},
         "model": {"name": "scratch-tiny", "scratch_vocab_size": 600},
         "train": {"max_length": 64, "batch_size": 16, "epochs": 2, "lr": 1e-3, "checkpoint_every": 0},
         "evaluate": {"batch_size": 32}}


def ran(proc) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", proc.stdout)


def set_params(repo, **sections):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_dvc_repro_runs_four_stages_then_only_what_changed(repo_copy, run_dvc, git):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(180) + [{"prompt": "User: hi\nAssistant:"}])
    set_params(repo_copy, **SMALL)
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data")

    first = run_dvc(repo_copy, "repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert ran(first) == ["validate", "split", "train", "evaluate"]
    lock = (repo_copy / "dvc.lock").read_text()
    metrics = {p.name: p.read_bytes() for p in (repo_copy / "metrics").glob("*")}
    assert json.loads(metrics["validate.json"])["rejected_by_reason"]["missing_field"] == 1

    again = run_dvc(repo_copy, "repro")
    assert again.returncode == 0 and ran(again) == []
    assert "up to date" in again.stdout

    forced = run_dvc(repo_copy, "repro", "--force")  # same params and data: identical bytes, no dvc.lock churn
    assert forced.returncode == 0 and ran(forced) == ["validate", "split", "train", "evaluate"]
    assert (repo_copy / "dvc.lock").read_text() == lock
    assert {p.name: p.read_bytes() for p in (repo_copy / "metrics").glob("*")} == metrics

    set_params(repo_copy, evaluate={"calibration_bins": 5})
    proc = run_dvc(repo_copy, "repro")
    assert proc.returncode == 0 and ran(proc) == ["evaluate"]

    set_params(repo_copy, train={"lr": 2e-3})
    proc = run_dvc(repo_copy, "repro")
    assert proc.returncode == 0 and ran(proc) == ["train", "evaluate"]

    shown = run_dvc(repo_copy, "metrics", "show", "--json")
    assert shown.returncode == 0
    assert "accuracy" in shown.stdout and "train_loss" in shown.stdout and "eval_pairs" in shown.stdout
