"""A running `dvc exp run` watched from a second process (#29 item 1): the train stage's dvclive summary on disk,
metrics/train/metrics.json, shows the step advancing while training is still under way, and `dvc exp show` lists
it from the workspace (what the VS Code DVC extension polls too). The file is read cheaply and often; `dvc exp show`
runs twice, as a user in another terminal would, so the test stays short on 2 busy cores."""
import json
import subprocess
import time

from tests.conftest import SMALL_PIPELINE, VENV_BIN, easy_rows, git, run_dvc, subprocess_env, write_jsonl, write_params

SUMMARY = "metrics/train/metrics.json"
STEPS = 250  # 200 pairs, about 180 of them trained on, 2 a step, 3 epochs: ~10 s on 2 busy cores, to be watched


def read_summary(repo) -> dict:
    """The summary as it is on disk now ({} before the first step, or if caught half-written)."""
    try:
        return json.loads((repo / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}


def exp_show_summary(repo) -> dict:
    """The workspace row's train summary as `dvc exp show --json` gives it."""
    shown = json.loads(run_dvc(repo, "exp", "show", "--json").stdout or "[]")
    row = next((r for r in shown if r.get("rev") == "workspace"), {})
    return ((((row.get("data") or {}).get("metrics") or {}).get(SUMMARY) or {}).get("data")) or {}


def test_the_summary_on_disk_and_exp_show_see_the_step_of_a_running_experiment_advance(repo_copy):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(200))
    write_params(repo_copy, {**SMALL_PIPELINE, "train": {**SMALL_PIPELINE["train"], "batch_size": 2,
                                                         "epochs": 3, "max_steps": STEPS}})
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data, many short steps")
    with open(repo_copy.parent / "exp-run.log", "w") as log:
        run = subprocess.Popen([str(VENV_BIN / "dvc"), "exp", "run"], cwd=repo_copy, stdout=log,
                               stderr=subprocess.STDOUT, env=subprocess_env(OMP_NUM_THREADS="1"))
        on_disk, shown, deadline = [], [], time.monotonic() + 600  # a bound for a hung run, not a speed target
        while run.poll() is None and time.monotonic() < deadline:
            summary = read_summary(repo_copy)
            if "step" in summary and "train_loss" not in summary:  # training under way: no final metric yet
                on_disk.append(summary["step"])
                if len(shown) < 2 and (not shown or time.monotonic() - shown[-1][0] > 1):
                    row = exp_show_summary(repo_copy)
                    if "step" in row and "train_loss" not in row and run.poll() is None:
                        shown.append((time.monotonic(), row["step"]))
            time.sleep(0.05)
        if run.poll() is None:
            run.kill()
        assert run.wait() == 0, (repo_copy.parent / "exp-run.log").read_text()[-3000:]
    final = read_summary(repo_copy)
    assert len(set(on_disk)) >= 10 and on_disk == sorted(on_disk) and max(on_disk) <= final["step"], on_disk[::50]
    assert [step for _, step in shown] == sorted({step for _, step in shown}) and len(shown) == 2, shown
    assert final["step"] == STEPS and {"loss", "lr", "epoch", "accuracy", "train_loss"} <= set(final)
