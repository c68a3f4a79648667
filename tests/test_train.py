"""The train and evaluate stages on a tiny model: learning, artifacts, metrics, resume, divergence."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stages import checkpoint
from stages.batching import length_grouped_batches, pad
from stages.losses import bt_loss, calibration, pairwise_accuracy
from tests.tiny import REPO, easy_rows, run_module, stage_workdir, tiny_model_dir

FAST = dict(train__max_length=96, train__batch_size=8, train__epochs=2, train__lr=3e-3, train__warmup_ratio=0.05,
            train__checkpoint_every=0, evaluate__batch_size=32)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("base"), easy_rows(300) + easy_rows(60, seed=1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base):
    work = stage_workdir(tmp_path_factory.mktemp("work"), easy_rows(240), easy_rows(60, seed=1),
                         model__name=str(base), **FAST)
    for stage in ("stages.train", "stages.evaluate"):
        proc = run_module(work, stage)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_loss_and_accuracy_definitions():
    c, r = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])
    expected = -torch.nn.functional.logsigmoid(torch.tensor([1.0, 0.0, -1.0])).mean()
    assert torch.isclose(bt_loss(c, r), expected)
    assert torch.isclose(bt_loss(c, r, margin=torch.tensor([1.0, 0.0, 0.0])),
                         -torch.nn.functional.logsigmoid(torch.tensor([0.0, 0.0, -1.0])).mean())
    assert torch.isclose(bt_loss(c, r, center_coef=0.1), expected + 0.1 * torch.tensor([1.0, 0.0, 25.0]).mean())
    assert pairwise_accuracy(c, r) == pytest.approx((1 + 0.5 + 0) / 3)  # the tie counts one half


def test_ece_of_a_perfectly_calibrated_set_is_zero():
    # p = σ(d) = 0.75 for four pairs of which three are right: accuracy 0.75 = confidence
    d = float(np.log(3.0))
    chosen, rejected = torch.tensor([d, d, d, 0.0]), torch.tensor([0.0, 0.0, 0.0, d])
    ece, bins = calibration(chosen, rejected, bins=10)
    assert ece == pytest.approx(0.0, abs=1e-6)
    assert bins == [{"bin": 5, "confidence": pytest.approx(0.75), "accuracy": 0.75, "pairs": 4}]


def test_length_grouped_batches_cover_each_pair_once_and_depend_on_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(5, 500, size=1003)
    batches = length_grouped_batches(lengths, 16, seed=1, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
    assert all(len(b) == 16 for b in batches[:-1] if len(b) != 1003 % 16)
    again = length_grouped_batches(lengths, 16, seed=1, epoch=0)
    assert all((a == b).all() for a, b in zip(batches, again))
    assert not all((a == b).all() for a, b in zip(batches, length_grouped_batches(lengths, 16, seed=1, epoch=1)))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.2 * np.ptp(lengths)  # grouped: far less padding than random batches


def test_pad_rounds_up_and_masks():
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0, multiple=4)
    assert ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]


def test_training_on_an_easy_set_generalises(trained):
    metrics = json.loads((trained / "metrics/eval.json").read_text())
    assert metrics["pairs"] == 60
    assert metrics["accuracy"] >= 0.9
    assert metrics["baseline_longer_wins_accuracy"] == 0.0  # on this set the chosen answer is always shorter
    train = json.loads((trained / "metrics/train.json").read_text())
    assert train["steps"] == 2 * 240 // 8 and train["pairs_used"] == 240
    assert train["train_loss"] < 0.69


def test_artifact_is_self_describing_safetensors(trained):
    model_dir = trained / "models/reward_model"
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "reward_model.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    meta = json.loads((model_dir / "reward_model.json").read_text())
    assert meta["max_length"] == 96 and meta["pooling"] == "cls" and len(meta["data_sha256"]) == 64
    assert meta["reward_std"] > 0


def test_curve_has_one_row_per_step(trained):
    lines = (trained / "metrics/train_curve.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,loss,accuracy,lr"
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, 61))


def test_eval_scores_are_written_per_pair(trained):
    rows = [json.loads(line) for line in (trained / "data/eval_scores.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(60))
    accuracy = json.loads((trained / "metrics/eval.json").read_text())["accuracy"]
    assert np.mean([r["correct"] for r in rows]) == pytest.approx(accuracy, abs=1e-6)


def test_resume_after_sigkill_is_byte_identical(tmp_path, base):
    params = dict(FAST, train__epochs=3, train__checkpoint_every=5, model__name=str(base))
    reference = stage_workdir(tmp_path / "ref", easy_rows(160), **params)
    assert run_module(reference, "stages.train").returncode == 0

    work = stage_workdir(tmp_path / "killed", easy_rows(160), **params)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(work.glob(".scratch/train/*/checkpoint.pt")) and time.time() < deadline:
        assert proc.poll() is None, "training finished before a checkpoint was seen"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "models/reward_model").exists()  # nothing half-written for DVC to cache

    resumed = run_module(work, "stages.train")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from the checkpoint at step" in resumed.stderr
    for name in ("models/reward_model/model.safetensors", "metrics/train.json", "metrics/train_curve.csv"):
        assert (work / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list(work.glob(".scratch/train/*/checkpoint.pt"))  # cleaned up after success


def test_a_checkpoint_from_other_inputs_is_never_used(tmp_path, base):
    params = dict(FAST, train__epochs=1, train__checkpoint_every=5, model__name=str(base))
    work = stage_workdir(tmp_path, easy_rows(80), **params)
    stale = work / checkpoint.SCRATCH / "train" / "0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "checkpoint.pt").write_bytes(b"not a checkpoint of this run")
    proc = run_module(work, "stages.train")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming" not in proc.stderr


def test_non_finite_loss_stops_with_a_clear_message_and_no_model(tmp_path, base):
    rows = easy_rows(40)
    rows[7]["margin"] = 1e39  # finite in JSON, infinite in float32: the loss of that batch overflows
    work = stage_workdir(tmp_path, rows, **dict(FAST, model__name=str(base)))
    proc = run_module(work, "stages.train")
    assert proc.returncode == 2
    assert "training diverged at step" in proc.stderr and "train.lr=" in proc.stderr
    assert "No model was written" in proc.stderr and "Traceback" not in proc.stderr
    assert not (work / "models/reward_model").exists() and not (work / "metrics/train.json").exists()
