"""A running `dvc exp run` watched from a second process: `dvc exp show` lists the train stage's dvclive summary and
its step advances while training is still under way (what the VS Code DVC extension polls, too)."""
import json
import subprocess
import time

from tests.conftest import SMALL_PIPELINE, VENV_BIN, easy_rows, git, run_dvc, subprocess_env, write_jsonl, write_params

SUMMARY = "metrics/train/metrics.json"


def workspace_summary(repo) -> dict:
    """The workspace row's train summary as `dvc exp show --json` gives it ({} before the first step)."""
    shown = json.loads(run_dvc(repo, "exp", "show", "--json").stdout or "[]")
    row = next((r for r in shown if r.get("rev") == "workspace"), {})
    metrics = (row.get("data") or {}).get("metrics") or {}
    return (metrics.get(SUMMARY) or {}).get("data") or {}


def test_exp_show_sees_the_step_of_a_running_experiment_advance(repo_copy):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(400))
    write_params(repo_copy, {**SMALL_PIPELINE, "train": {**SMALL_PIPELINE["train"], "batch_size": 2, "epochs": 5}})
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data, many short steps")
    with open(repo_copy.parent / "exp-run.log", "w") as log:
        run = subprocess.Popen([str(VENV_BIN / "dvc"), "exp", "run"], cwd=repo_copy, stdout=log,
                               stderr=subprocess.STDOUT, env=subprocess_env())
        seen = []
        deadline = time.monotonic() + 600
        while run.poll() is None and time.monotonic() < deadline:
            summary = workspace_summary(repo_copy)
            if "step" in summary and "train_loss" not in summary and run.poll() is None:
                seen.append(summary["step"])  # training still under way: no final metric yet
            time.sleep(0.2)
        assert run.wait(timeout=60) == 0, (repo_copy.parent / "exp-run.log").read_text()[-3000:]
    assert len(set(seen)) >= 2 and seen == sorted(seen), seen
    final = json.loads((repo_copy / SUMMARY).read_text())
    assert max(seen) < final["step"] and {"loss", "lr", "epoch", "train_loss"} <= set(final)
