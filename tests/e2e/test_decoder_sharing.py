"""Prefix sharing (train.prefix_sharing auto) on a tiny Llama under train.strategy ddp and fsdp for real: two gloo
processes each, `python -m stages.train` under torchrun, both runs started together (30-50 s on 2 shared cores,
mostly imports). Each packs its pairs (the prompt once) and trains what one process trains: the same per-step
losses and eval metrics within 1e-4 of each other and of the one-process run.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import (easy_rows, evaluate_paths, live_series, prepare_stage_inputs, train_in_process,
                            watch_training)
from tests.unit.test_families import build

STEPS = 6  # 48 pairs / 8 per step, 1 epoch
ROWS, EVAL_ROWS = easy_rows(48), easy_rows(16, seed=1)
# center_rewards_coef: without it the head's bias follows the rounding noise of each strategy's reductions
# (tests/e2e/test_sharded_training.py), which shows in reward_mean while every shift-free metric agrees
TRAIN = {"batch_size": 8, "max_length": 64, "epochs": 1, "lr": 1e-3, "warmup_ratio": 0.0, "checkpoint_every": 0,
         "device": "cpu", "center_rewards_coef": 0.01, "prefix_sharing": "auto"}
SHARED = "each pair's prompt computed once (prefix sharing)"


def curve_losses(work: Path) -> list[float]:
    return [loss for _, loss in live_series(work, "loss")]


def eval_metrics(work: Path) -> dict:
    return json.loads((work / "metrics" / "eval.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """{strategy: (work dir, TrainingRun or None)}: ddp and fsdp with 2 processes, evaluated; "one": one
    process in process."""
    from rewardkit.config import EvaluateConfig, build as build_config
    from rewardkit.evaluation.job import evaluate_model

    base = build("llama", tmp_path_factory.mktemp("llama") / "base")
    dirs = {}
    for strategy in ("ddp", "fsdp"):
        dirs[strategy] = tmp_path_factory.mktemp(strategy)
        prepare_stage_inputs(dirs[strategy], base, ROWS, EVAL_ROWS,
                             train={**TRAIN, "nproc_per_node": 2, "strategy": strategy})
    with ThreadPoolExecutor(2) as pool:
        started = {name: pool.submit(watch_training, work, STEPS, timeout=120) for name, work in dirs.items()}
        one = train_in_process(tmp_path_factory.mktemp("one"), base, ROWS, EVAL_ROWS, train=TRAIN)
        out = {name: (dirs[name], future.result()) for name, future in started.items()}
    for name, (work, run) in out.items():
        assert run.returncode == 0, run.output
        (work / "eval_sets").mkdir(exist_ok=True)
        evaluate_model(evaluate_paths(work), build_config(EvaluateConfig, {}), device="cpu")
    out["one"] = (one, None)
    return out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_share_prompts_and_train_like_one(runs, strategy):
    (work, run), (one, _) = runs[strategy], runs["one"]
    assert run.workers == 2 and "on cpu x2" in run.output
    assert run.output.count(SHARED) == 1  # said by rank 0: the packed path, not the padded one
    losses, want = curve_losses(work), curve_losses(one)
    assert len(losses) == STEPS and losses == pytest.approx(want, abs=1e-4)
    assert losses[0] != losses[-1]  # it trained
    ours, theirs = eval_metrics(work), eval_metrics(one)
    assert ours["pairs"] == theirs["pairs"] == len(EVAL_ROWS)
    for key, value in theirs.items():
        if isinstance(value, float):
            assert ours[key] == pytest.approx(value, abs=1e-4), key
