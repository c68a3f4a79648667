"""Two `dvc repro` at once in one project (#28 item 4): the first runs to the end, the second stops at the first
stage the other one holds, with DVC's lock message (exit code non-zero, no traceback), and nothing is corrupted:
dvc.lock and the outputs agree afterwards and a third `dvc repro` does nothing.

DVC 3 releases its repository lock while a stage's command runs and guards each stage's dependencies and outputs
with a read/write lock (.dvc/tmp/rwlock) instead, so the second process gets as far as the stages already up to date
and stops at the one running, with "'<output>' is busy, it is being blocked by: (PID n): dvc repro" and a line on
removing a stale rwlock. When it arrives while the first holds the repository lock itself it stops with "Unable to
acquire lock" instead; either is DVC's own message, printed without a traceback."""
import json
import re
import subprocess

import yaml

from tests.conftest import SMALL_PIPELINE, VENV_BIN, easy_rows, git, run_dvc, subprocess_env, write_jsonl, \
    write_params

LOCK_MESSAGE = re.compile(r"^ERROR: (failed to reproduce '\w+': '[^']+' is busy, it is being blocked by:|"
                          r"Unable to acquire lock)")


def test_a_second_repro_stops_at_the_lock_and_nothing_is_corrupted(repo_copy):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(180))
    write_params(repo_copy, SMALL_PIPELINE)
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data")
    first = subprocess.Popen([str(VENV_BIN / "dvc"), "repro"], cwd=repo_copy, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=subprocess_env())
    seen = []
    for line in first.stdout:  # start the second while the first trains (tens of seconds at SMALL_PIPELINE)
        seen.append(line)
        if "Running stage 'train'" in line:
            break
    second = run_dvc(repo_copy, "repro")
    rest, _ = first.communicate(timeout=300)
    assert first.returncode == 0, "".join(seen)[-2000:] + rest[-3000:]

    assert second.returncode != 0, second.stdout + second.stderr
    assert LOCK_MESSAGE.match(second.stderr), second.stderr
    assert "Traceback" not in second.stdout + second.stderr
    assert "Running stage" not in second.stdout  # it ran nothing: the stages before train were up to date

    lock = yaml.safe_load((repo_copy / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"validate", "split", "tokenize", "train", "evaluate"}
    status = run_dvc(repo_copy, "status")  # every output's hash against dvc.lock
    assert status.returncode == 0 and "Data and pipelines are up to date" in status.stdout, status.stdout
    third = run_dvc(repo_copy, "repro")
    assert third.returncode == 0 and "Running stage" not in third.stdout, third.stdout + third.stderr
    rwlock = json.loads((repo_copy / ".dvc/tmp/rwlock").read_text())
    assert not rwlock.get("read") and not rwlock.get("write")  # both processes released what they held
