"""train.strategy=fsdp for real: `python -m stages.train` with 2 gloo processes under torchrun on CPU.

FSDP must run the optimisation DDP runs (same global batches: eval metrics within 1e-4), write sharded DCP
checkpoints that resume byte-identical after kill -9 and SIGTERM, follow the damaged-checkpoint rules, reshard
when resumed with another process count, and release a plain model (LoRA merged, the adapter beside it).
Runs are real subprocesses on the tiny base, two at a time (15-40 s each on 2 shared cores); the file takes 2-4
minutes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import (
    TrainingRun,
    easy_rows,
    evaluate_paths,
    live_curve,
    live_plot,
    prepare_stage_inputs,
    run_stage,
    train_summary,
    watch_training,
    write_params,
)

STEPS = 24  # 96 pairs / 8 per step x 2 epochs
TIMEOUT = 240
# center_rewards_coef: the Bradley-Terry loss does not see a shift of every reward, so without it the head's bias
# gets a gradient of rounding noise only, which AdamW scales up to lr-sized steps: reward_mean would then follow
# the noise of each strategy's reductions (4e-4 apart here) while every shift-free metric agrees to 1e-6
PARAMS = {"nproc_per_node": 2, "batch_size": 8, "max_length": 64, "epochs": 2, "lr": 1e-3, "warmup_ratio": 0.1,
          "checkpoint_every": 4, "device": "cpu", "strategy": "fsdp", "center_rewards_coef": 0.01}
KILL_AT, STOP_AT = 10, 5


class Run(TrainingRun):
    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.lines() if line.startswith(prefix)]

    def resumed(self) -> str:
        found = re.findall(rf"resuming from the checkpoint at step (\d+)/{STEPS} in \S+(.*)", self.output)
        assert len(found) == 1, self.output  # said once, by rank 0
        return f"{found[0][0]}{found[0][1]}"


def workdir(root: Path, base: Path, **train) -> Path:
    prepare_stage_inputs(root, base, easy_rows(96), easy_rows(40, seed=1), train={**PARAMS, **train})
    return root


def train(work: Path, act_at: int | None = None, signum: int = 0) -> Run:
    def act(proc, _workers) -> None:
        if signum == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)  # a preemption, `kill -9` of dvc's process group
        else:
            proc.send_signal(signum)  # the agent passes it on to both ranks

    return Run(**vars(watch_training(work, STEPS, act_at, act if act_at else None, TIMEOUT)))


def run_all(jobs: dict[str, tuple]) -> dict[str, Run]:
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(train, *args) for name, args in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoints(work: Path) -> Path:
    return next((work / ".scratch" / "train").iterdir())


@pytest.fixture(scope="module")
def runs(tiny_base, tmp_path_factory) -> dict:
    """{name: (work, Run)} of every run: the uninterrupted ddp, fsdp and fsdp + LoRA + checkpointing runs, an fsdp
    run killed (-9) and one stopped (SIGTERM); then the reruns: of the killed one, of a copy of it with 4
    processes, and of the stopped one with a byte of its newest shard flipped."""
    dirs = {name: workdir(tmp_path_factory.mktemp(name), tiny_base, **train) for name, train in {
        "ddp": {"strategy": "ddp"}, "fsdp": {}, "killed": {}, "stopped": {},
        "lora": {"lora": {"r": 4}, "gradient_checkpointing": True, "lr": 3e-3}}.items()}
    first = run_all({"ddp": (dirs["ddp"],), "fsdp": (dirs["fsdp"],), "lora": (dirs["lora"],),
                     "killed": (dirs["killed"], KILL_AT, signal.SIGKILL),
                     "stopped": (dirs["stopped"], STOP_AT, signal.SIGTERM)})
    out = {f"first-{name}": (dirs[name], run) for name, run in first.items()}
    out["stopped-checkpoints"] = sorted(p.name for p in checkpoints(dirs["stopped"]).iterdir())
    dirs["resharded"] = Path(shutil.copytree(dirs["killed"], tmp_path_factory.mktemp("resharded") / "work",
                                             symlinks=True))
    write_params(dirs["resharded"], {"train": {**PARAMS, "nproc_per_node": 4}})
    newest = sorted(checkpoints(dirs["stopped"]).glob("step-*.dcp"))[-1] / "__0_0.distcp"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    second = run_all({name: (dirs[name],) for name in ("killed", "resharded", "stopped")})
    out.update((name, (dirs[name], run)) for name, run in second.items())
    for name in ("ddp", "fsdp", "resharded"):
        from rewardkit.config import EvaluateConfig, build
        from rewardkit.evaluation.job import evaluate_model

        (dirs[name] / "eval_sets").mkdir(exist_ok=True)
        evaluate_model(evaluate_paths(dirs[name]), build(EvaluateConfig, {}), device="cpu")
    return out


def eval_metrics(work: Path) -> dict:
    return json.loads((work / "metrics" / "eval.json").read_text())


def close_numbers(a: dict, b: dict, tolerance: float) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, dict):
            close_numbers(value, b[key], tolerance)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert b[key] == pytest.approx(value, abs=tolerance), key
        else:
            assert b[key] == value, key


def test_fsdp_trains_like_ddp(runs):
    (ddp, ddp_run), (fsdp, fsdp_run) = runs["first-ddp"], runs["first-fsdp"]
    assert ddp_run.returncode == fsdp_run.returncode == 0, fsdp_run.output
    assert fsdp_run.workers == 2 and "on cpu x2" in fsdp_run.output
    close_numbers(eval_metrics(ddp), eval_metrics(fsdp), 1e-4)
    assert eval_metrics(fsdp)["pairs"] == 40
    curves = [live_curve(w) for w in (ddp, fsdp)]  # rank 0 logged each step through dvclive
    assert len(curves[0]) == len(curves[1]) == STEPS
    for a, b in zip(*curves):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
    # rank 0 released a plain model; no checkpoint is left behind
    assert (fsdp / "models/trained/model.safetensors").is_file() and not (fsdp / "models/trained/adapter").exists()
    assert not any((fsdp / ".scratch" / "train").iterdir())


def test_a_killed_fsdp_run_resumes_byte_identical(runs):
    first = runs["first-killed"][1]
    assert first.returncode == -signal.SIGKILL and "Traceback" not in first.output
    work, rerun = runs["killed"]
    assert rerun.returncode == 0, rerun.output
    assert rerun.resumed() == "8"  # the newest periodic checkpoint before the kill, sharded by 2 ranks
    reference = runs["first-fsdp"][0]
    assert sha256(work / "models/trained/model.safetensors") == sha256(reference / "models/trained/model.safetensors")
    for name in ("metrics/train/metrics.json", "metrics/train/plots/metrics/loss.tsv"):
        assert (work / name).read_bytes() == (reference / name).read_bytes(), name


def test_sigterm_then_a_damaged_shard_falls_back_to_the_previous_checkpoint(runs):
    first = runs["first-stopped"][1]
    assert first.returncode == 128 + signal.SIGTERM, first.output
    stopped = [line for line in first.starting("error: ")]
    assert len(stopped) == 1 and re.match(rf"error: stopped by SIGTERM after step (\d+)/{STEPS}", stopped[0])
    step = int(re.search(r"after step (\d+)", stopped[0]).group(1))
    periodic = (step - 1) // 4 * 4  # the last periodic checkpoint before it
    assert runs["stopped-checkpoints"] == [f"step-{s:08d}.{ext}" for s in (periodic, step) for ext in ("dcp", "json")]
    work, rerun = runs["stopped"]
    assert rerun.returncode == 0, rerun.output
    warnings = rerun.starting("warning: ")
    assert len(warnings) == 1 and f"step-{step:08d}.dcp is damaged (the sha256 of __0_0.distcp differs from its " \
                                  f"manifest: bytes were changed); moved it aside to step-{step:08d}.dcp.damaged, " \
                                  f"resuming from the one of step {periodic}" in warnings[0], rerun.output
    assert rerun.resumed() == str(periodic)
    reference = runs["first-fsdp"][0]
    assert sha256(work / "models/trained/model.safetensors") == sha256(reference / "models/trained/model.safetensors")
    assert sorted(p.name for p in checkpoints(work).iterdir()) == [f"step-{step:08d}.dcp.damaged",
                                                                   f"step-{step:08d}.json.damaged"]


def test_a_sharded_checkpoint_resumes_with_another_process_count(runs):
    work, rerun = runs["resharded"]
    assert rerun.returncode == 0, rerun.output
    assert rerun.resumed() == "8 (written by 2 processes, resharded for 4)" and "on cpu x4" in rerun.output
    close_numbers(eval_metrics(runs["first-fsdp"][0]), eval_metrics(work), 1e-4)


def test_fsdp_with_lora_and_checkpointing_releases_a_merged_model_and_the_adapter(runs):
    work, run = runs["first-lora"]
    assert run.returncode == 0, run.output
    assert re.search(r"LoRA r=4: training [\d,]+ of [\d,]+ parameters", run.output)
    model_dir = work / "models/trained"
    assert json.loads((model_dir / "reward_model.json").read_text())["lora"]["r"] == 4
    assert (model_dir / "adapter" / "adapter_model.safetensors").is_file()
    from safetensors import safe_open
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        assert not any("lora_" in k or "modules_to_save" in k for k in f.keys())
    first, last = [r["loss"] for r in live_curve(work)[::23]]
    assert last < first  # the adapters and the head learned


def test_fsdp_on_one_process_stops_with_one_line_before_any_work(tiny_base, tmp_path):
    work = workdir(tmp_path, tiny_base, nproc_per_node=1)
    result = run_stage(work, "train")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: train.strategy=fsdp shards the model over several processes but this run has one: set "
        "train.nproc_per_node to 2 or more (or run it under torchrun), or use train.strategy=ddp")
    assert "Traceback" not in result.stderr and not (work / ".scratch").exists() and not (work / "models").exists()


def test_validation_during_training_runs_under_fsdp_as_under_ddp(tiny_base, tmp_path):
    """train.eval_every with fsdp: both ranks run the validation forwards (their all-gathers need each other),
    rank 0 records them; the curve is ddp's within 1e-4."""
    every = {"eval_every": 2, "validation_fraction": 0.2, "epochs": 1, "checkpoint_every": 0}
    dirs = {name: workdir(tmp_path / name, tiny_base, strategy=name, **every) for name in ("ddp", "fsdp")}
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(watch_training, work, STEPS, timeout=TIMEOUT) for name, work in dirs.items()}
        done = {name: future.result() for name, future in futures.items()}
    for run in done.values():
        assert run.returncode == 0 and run.workers == 2, run.output
    curves = {name: live_plot(work, "train", "validation") for name, work in dirs.items()}
    assert len(curves["fsdp"]) == len(curves["ddp"]) >= 4  # every 2 steps and after the last one
    for a, b in zip(curves["ddp"], curves["fsdp"]):
        assert list(a) == list(b) == ["step", "val_loss", "val_accuracy"] and a["step"] == b["step"]
        assert [b["val_loss"], b["val_accuracy"]] == pytest.approx([a["val_loss"], a["val_accuracy"]], abs=1e-4)
    metrics = train_summary(dirs["fsdp"])
    assert metrics["validation_pairs"] > 0 and "best_validation_loss" in metrics
