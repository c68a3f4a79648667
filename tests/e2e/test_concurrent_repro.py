"""Two runs at once in one project (#28 item 4), through `python -m stages.dvc_run` (what `make repro` and `make
demo` run): the first runs to the end, the second stops at once with one line of ours (exit 2, nothing on stdout, no
traceback), and nothing is corrupted: dvc.lock and the outputs agree afterwards (dvc status), the
experiment of the first `exp run` is recorded and applied. A bare `dvc` holding DVC's repository lock or a stage's
outputs gets the same one line from a wrapped run (stages/dvc_run.py has why: a bare second `dvc exp run` broke the
first experiment)."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.conftest import SMALL_PIPELINE, easy_rows, git, run_dvc, subprocess_env, write_jsonl, write_params

BUSY = "error: another dvc command is running in this project (PID {pid}: "
HOLD = ("import sys, time, zc.lockfile; lock = zc.lockfile.LockFile(sys.argv[1]); print('held', flush=True); "
        "time.sleep(60)")


def wrapped(repo, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.dvc_run", *args], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())


def race(repo, first_args: list[str], second_args: list[str], start_at: str) -> tuple[str, subprocess.Popen, str]:
    """Start the first run, and the second once the first printed `start_at`; (first's output, second, its stderr)
    with both ended."""
    first = wrapped(repo, *first_args)
    seen = []
    for line in first.stdout:
        seen.append(line)
        if start_at in line:
            break
    second = wrapped(repo, *second_args)
    second_out, second_err = second.communicate(timeout=60)
    rest, errors = first.communicate(timeout=300)
    assert first.returncode == 0, "".join(seen)[-2000:] + rest[-2000:] + errors[-3000:]
    assert second.returncode == 2 and second_out == "", second_out + second_err
    assert second_err.startswith(BUSY.format(pid=first.pid)) and second_err.count("\n") == 1, second_err
    return "".join(seen) + rest, second, second_err


def test_a_second_repro_or_exp_run_stops_with_one_line_and_nothing_is_corrupted(repo_copy):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(48))
    write_params(repo_copy, {**SMALL_PIPELINE, "train": {**SMALL_PIPELINE["train"], "epochs": 1}})
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data")
    _, _, err = race(repo_copy, ["repro"], ["repro"], "Running stage 'validate'")
    assert "stages.dvc_run repro)" in err and "dvc exp run --queue" in err
    lock = yaml.safe_load((repo_copy / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"validate", "split", "tokenize", "train", "evaluate"}
    status = run_dvc(repo_copy, "status")  # every output's hash against dvc.lock: a third repro would do nothing
    assert status.returncode == 0 and "Data and pipelines are up to date" in status.stdout, status.stdout

    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "reproduced")
    out, _, err = race(repo_copy, ["exp", "run", "-S", "evaluate.batch_size=16"],
                       ["exp", "run", "-S", "evaluate.batch_size=8"], "Reproducing experiment")
    assert "stages.dvc_run exp run -S evaluate.batch_size=16)" in err
    assert "Running stage 'evaluate'" in out and "Ran experiment(s)" in out  # the first experiment completed
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    assert params["evaluate"]["batch_size"] == 16  # applied to the workspace; the second changed nothing
    experiments = git(repo_copy, "for-each-ref", "refs/exps").stdout.splitlines()
    assert len([ref for ref in experiments if "refs/exps/exec/" not in ref]) == 1, experiments  # one recorded
    rwlock = json.loads((repo_copy / ".dvc/tmp/rwlock").read_text())
    assert not rwlock.get("read") and not rwlock.get("write")  # every process released what it held


def test_a_bare_dvc_holding_the_project_gets_the_same_one_line(tmp_path):
    """A bare `dvc` holding DVC's repository lock (here a process holding .dvc/tmp/lock as DVC does), or a stage's
    outputs in .dvc/tmp/rwlock: the wrapped run stops with one line naming it, DVC's multi-line message dropped."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    assert run_dvc(repo, "init", "-q").returncode == 0
    (repo / "dvc.yaml").write_text("stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(repo / ".dvc/tmp/lock")], stdout=subprocess.PIPE,
                              text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline() == "held\n"
        out, err = wrapped(repo, "repro").communicate(timeout=60)  # DVC retries its lock for a few seconds
        assert err.startswith(BUSY.format(pid=holder.pid)) and err.count("\n") == 1 and out == "", out + err
        holder.kill()
        holder.wait()
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live holder of a.txt
        (repo / ".dvc/tmp/rwlock").write_text(json.dumps(
            {"write": {str(repo / "a.txt"): {"pid": holder.pid, "cmd": "dvc repro"}}, "read": {}}))
        done = wrapped(repo, "repro")
        out, err = done.communicate(timeout=60)
        assert done.returncode == 2 and out == "" and err.count("\n") == 1, out + err
        assert err.startswith(BUSY.format(pid=holder.pid) + "dvc repro)")
        assert not (repo / "a.txt").exists()  # it ran nothing
    finally:
        holder.kill()
        holder.wait()
    done = wrapped(repo, "repro")  # the holder gone (its rwlock entry stale): the run goes ahead
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0 and (repo / "a.txt").read_text() == "a\n", out + err
