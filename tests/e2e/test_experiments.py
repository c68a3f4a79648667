"""DVC experiments end to end: `-S` values in scientific notation reach the trainer; exp show/diff, plots diff.
Every dvc command runs with an empty HOME (conftest.subprocess_env): no user git identity or config is needed."""
import json
import time

from tests.conftest import SMALL_PIPELINE, easy_rows, git, run_dvc, write_jsonl, write_params


def test_exp_run_with_scientific_notation_reaches_the_trainer(repo_copy):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(120))
    write_params(repo_copy, SMALL_PIPELINE)
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data")

    proc = run_dvc(repo_copy, "exp", "run", "-n", "slow", "-S", "train.lr=1e-6", "-S", "train.epochs=3")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "lr: 1e-06" in (repo_copy / "params.yaml").read_text()  # DVC wrote the YAML string form
    live = repo_copy / "metrics/train/plots/metrics"
    lrs = [float(line.split("\t")[1]) for line in (live / "lr.tsv").read_text().splitlines()[1:]]
    epochs = [int(float(line.split("\t")[1])) for line in (live / "epoch.tsv").read_text().splitlines()[1:]]
    assert max(lrs) == 1e-6 and max(epochs) == 3  # the peak after warm-up is the value given

    proc = run_dvc(repo_copy, "exp", "run", "-n", "fast", "-S", "train.lr=3e-3", "-S", "train.epochs=3")
    assert proc.returncode == 0, proc.stderr[-2000:]

    shown = json.loads(run_dvc(repo_copy, "exp", "show", "--json").stdout)
    exps = _experiments(shown)
    assert {"slow", "fast"} <= set(exps)
    for name, lr in (("slow", 1e-6), ("fast", 3e-3)):
        data = exps[name]
        assert float(data["params"]["params.yaml"]["data"]["train"]["lr"]) == lr
        eval_metrics = data["metrics"]["metrics/eval.json"]["data"]
        assert {"accuracy", "loss", "mean_margin", "ece", "baseline_longer_wins_accuracy"} <= set(eval_metrics)
    assert exps["fast"]["metrics"]["metrics/eval.json"]["data"]["accuracy"] > \
        exps["slow"]["metrics"]["metrics/eval.json"]["data"]["accuracy"]

    diff = json.loads(run_dvc(repo_copy, "exp", "diff", "slow", "fast", "--json").stdout)
    assert "train.lr" in diff["params"]["params.yaml"]
    assert "accuracy" in diff["metrics"]["metrics/eval.json"]
    plots = run_dvc(repo_copy, "plots", "diff", "slow", "fast", "--json")
    assert plots.returncode == 0 and "Training loss per step" in plots.stdout


def _experiments(shown: list) -> dict:
    """name -> {"params", "metrics"} from `dvc exp show --json` (DVC 3 layout)."""
    out = {}
    for rev in shown:
        for exp in rev.get("experiments") or []:
            for run in exp.get("revs") or []:
                if run.get("name"):
                    out[run["name"]] = run["data"]
    return out


def test_queued_sweep_runs_with_dvc_queue_start(repo_copy):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(60))
    write_params(repo_copy, SMALL_PIPELINE)
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data")
    for lr in ("1e-4", "2e-3"):
        assert run_dvc(repo_copy, "exp", "run", "--queue", "-S", f"train.lr={lr}").returncode == 0
    assert run_dvc(repo_copy, "queue", "start", "-j", "1").returncode == 0
    deadline = time.time() + 600
    while time.time() < deadline:
        status = run_dvc(repo_copy, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status
    lrs = sorted(float(run["params"]["params.yaml"]["data"]["train"]["lr"])
                 for run in _experiments(json.loads(run_dvc(repo_copy, "exp", "show", "--json").stdout)).values())
    assert lrs == [1e-4, 2e-3]
    run_dvc(repo_copy, "queue", "stop", "--kill")
