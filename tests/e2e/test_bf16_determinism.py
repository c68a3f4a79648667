"""train.precision=bf16 on the CPU is as deterministic as fp32 (#24): two runs of the same params and data give the
same bytes (so dvc.lock does not churn), and a run killed with SIGKILL or stopped by SIGTERM resumes from its
checkpoint to the bytes of a run that was never interrupted. Real `python -m stages.train` subprocesses on the tiny
base, the settings of tests/e2e/test_faults.py with train.precision=bf16."""
from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import easy_rows, prepare_stage_inputs, train_summary
from tests.e2e.test_faults import OUTPUTS, PARAMS, STEPS, STOP_AT, check_stopped, same_outputs, stopped_state, train

BF16 = {**PARAMS, "precision": "bf16"}


def workdir(root: Path, base: Path, params: dict) -> Path:
    prepare_stage_inputs(root, base, easy_rows(64), easy_rows(16, seed=2), train=params)
    return root


@pytest.fixture(scope="module")
def runs(tiny_base, tmp_path_factory) -> dict:
    """{name: (directory, Run)}: two uninterrupted bf16 runs, one fp32 run, one bf16 run killed (-9) and one
    stopped (SIGTERM) after step STOP_AT; then the reruns of the killed and the stopped one."""
    kinds = {"bf16": (BF16, None), "bf16_again": (BF16, None), "fp32": (PARAMS, None),
             "killed": (BF16, signal.SIGKILL), "stopped": (BF16, signal.SIGTERM)}
    dirs = {name: workdir(tmp_path_factory.mktemp(name), tiny_base, params) for name, (params, _) in kinds.items()}

    def first(name: str):
        signum = kinds[name][1]
        return train(dirs[name], **({"stop_at": STOP_AT, "signum": signum} if signum else {}))

    with ThreadPoolExecutor(2) as pool:
        out = {name: (dirs[name], run) for name, run in zip(kinds, pool.map(first, kinds))}
        out["stopped_state"] = stopped_state(out["stopped"][1], dirs["stopped"])
        for name, run in zip(("killed_resumed", "stopped_resumed"), pool.map(train, (dirs["killed"], dirs["stopped"]))):
            out[name] = (dirs[name.split("_")[0]], run)
    return out


def test_two_bf16_runs_give_the_same_bytes_and_differ_from_fp32(runs):
    for name in ("bf16", "bf16_again", "fp32"):
        assert runs[name][1].returncode == 0, runs[name][1].output
    assert "in bf16" in runs["bf16"][1].output
    same_outputs(runs["bf16_again"][0], runs["bf16"][0])
    model = OUTPUTS[0]
    assert (runs["bf16"][0] / model).read_bytes() != (runs["fp32"][0] / model).read_bytes()  # bf16 really ran
    assert train_summary(runs["bf16"][0])["precision"] == "bf16"


def test_a_bf16_run_killed_with_sigkill_resumes_byte_identical(runs):
    work, killed = runs["killed"]
    assert killed.returncode == -signal.SIGKILL or killed.returncode == 128 + signal.SIGKILL, killed.output
    resumed = runs["killed_resumed"][1]
    assert resumed.returncode == 0, resumed.output
    assert resumed.resumed_from() is not None and 0 < resumed.resumed_from() < STEPS, resumed.output
    same_outputs(work, runs["bf16"][0])


def test_a_bf16_run_stopped_by_sigterm_resumes_byte_identical(runs):
    work, stopped = runs["stopped"]
    check_stopped(stopped, work, runs["stopped_state"])
    resumed = runs["stopped_resumed"][1]
    assert resumed.returncode == 0 and resumed.resumed_from() == runs["stopped_state"]["step"], resumed.output
    same_outputs(work, runs["bf16"][0])
