"""The stage entry points as a user runs them: `python -m stages.<stage>` with dvc.yaml's arguments in a working
directory of its own. Expected problems end with exit code 2 and one `error: ...` line, never a traceback."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, easy_rows, run_stage, subprocess_env, write_jsonl, write_params


def assert_fails(proc, *words: str) -> None:
    """Exit 2, one line on stderr that starts with "error:" and holds every word, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


def test_validate_keeps_good_lines_and_says_so(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "pairs.jsonl", easy_rows(5) + ["[1]"])
    write_params(tmp_path, {"data": {"path": "pairs.jsonl", "dir": "."}, "validate": {"max_reject_fraction": 0.5}})
    proc = run_stage(tmp_path, "validate")
    assert proc.returncode == 0, proc.stderr
    assert "validate: kept 5 of 6 lines of pairs.jsonl; rejected 1 (not_object 1)" in proc.stdout
    assert len((tmp_path / "data/validated.jsonl").read_text().splitlines()) == 5


def test_validate_missing_file(tmp_path: Path) -> None:
    write_params(tmp_path, {"data": {"path": "nowhere/pairs.jsonl", "dir": "."}})
    assert_fails(run_stage(tmp_path, "validate"), "not found", "nowhere/pairs.jsonl", "data.path", "params.yaml")


def test_validate_bad_params_name_the_key(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "pairs.jsonl", easy_rows(2))
    write_params(tmp_path, {"data": {"path": "pairs.jsonl", "dir": "."}, "validate": {"max_reject_fractoin": 0.1}})
    assert_fails(run_stage(tmp_path, "validate"), "params.yaml", "unknown key", "validate.max_reject_fractoin")


@pytest.mark.parametrize("eval_fraction", [0, 1.5])
def test_split_rejects_a_fraction_outside_0_1(tmp_path: Path, eval_fraction: float) -> None:
    write_params(tmp_path, {"split": {"eval_fraction": eval_fraction}})
    write_jsonl(tmp_path / "data/validated.jsonl", easy_rows(20))
    assert_fails(run_stage(tmp_path, "split"), "split.eval_fraction", "must be in (0, 1)")


def test_split_guard_message(tmp_path: Path) -> None:
    write_params(tmp_path, {"split": {"eval_fraction": 0.5}})
    write_jsonl(tmp_path / "data/validated.jsonl", easy_rows(1))
    proc = run_stage(tmp_path, "split")
    assert_fails(proc)
    assert proc.stderr.startswith("error: split.eval_fraction = 0.5 would put all 1 pairs")


def test_train_without_its_store(tmp_path: Path, tiny_base: Path) -> None:
    write_params(tmp_path, {"model": {"name": str(tiny_base)}})
    assert_fails(run_stage(tmp_path, "train"), "token store data/tokens/train is missing", "dvc repro tokenize")


def test_tokenize_without_the_splits(tmp_path: Path, tiny_base: Path) -> None:
    write_params(tmp_path, {"model": {"name": str(tiny_base)}})
    assert_fails(run_stage(tmp_path, "tokenize"), "data/train.jsonl not found", "dvc repro split")


def test_score_reports_a_bad_row_without_traceback(trained_model: Path, tmp_path: Path) -> None:
    good = {"prompt": "User: hi\nAssistant:", "response": " Hello."}
    source = write_jsonl(tmp_path / "in.jsonl", [good] * 16 + [{"prompt": "p"}])
    proc = run_stage(trained_model, "score", "--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2
    assert proc.stderr == f"error: {source} line 17: field 'response' is missing (rows are prompt/response, " \
                          "as on line 1)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_score_writes_rewards(trained_model: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "User: hi\nAssistant:", "response": " Hello."}])
    proc = run_stage(trained_model, "score", "--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads((tmp_path / "out.jsonl").read_text())["reward"], float)


def test_dataset_generator_entry_point(tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "small.jsonl"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "dataset/make_financial_rewards.py"), "--seed", "7",
                           "--n", "50", "--out", str(out)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**subprocess_env(), "PYTHONPATH": ""})  # runs from anywhere
    assert done.returncode in (0, 1), done.stderr  # 1: a cue check failed, which a 50-pair sample may do
    assert len(out.read_text(encoding="utf-8").splitlines()) == 50
    assert "50 pairs" in done.stdout


def test_make_demo_needs_no_git_identity(tmp_path: Path) -> None:
    """On a machine without a git identity, the demo's `dvc exp run` gets a local one (DVC would stop)."""
    import subprocess

    env = {**subprocess_env(home=tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        env.pop(name)
    dry = subprocess.run(["make", "-n", "demo"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    line = next(line for line in dry.stdout.splitlines() if "stages.dvc_run exp run" in line)
    assert "GIT_AUTHOR_NAME=rewardkit-demo" in line and "GIT_COMMITTER_EMAIL=demo@localhost" in line
