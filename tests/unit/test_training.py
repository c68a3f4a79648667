"""The train and evaluate stages' library code on a tiny model: learning, artifacts, metrics, resume, divergence."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rewardkit.errors import UserError
from rewardkit.modeling.devices import resolve_precision
from rewardkit.training import checkpoint
from rewardkit.training import loop as optimization
from tests.conftest import easy_rows, live_plot, live_series, read_jsonl, train_in_process, train_summary

FAST = {"max_length": 96, "batch_size": 8, "epochs": 2, "lr": 3e-3, "warmup_ratio": 0.05, "checkpoint_every": 0}
OUTPUTS = ("models/trained/model.safetensors", "models/trained/reward_model.json", "metrics/train/metrics.json",
           "metrics/train/plots/metrics/loss.tsv", "metrics/train/plots/metrics/lr.tsv",
           "metrics/train/plots/custom/validation.json")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base):
    return train_in_process(tmp_path_factory.mktemp("work"), tiny_base, easy_rows(240), easy_rows(60, seed=1),
                            train=FAST, evaluate={"batch_size": 32})


def test_training_on_an_easy_set_generalises(trained):
    metrics = json.loads((trained / "metrics/eval.json").read_text())
    assert metrics["pairs"] == 60
    assert metrics["accuracy"] >= 0.9
    assert metrics["baseline_longer_wins_accuracy"] == 0.0  # on this set the chosen answer is always shorter
    train = train_summary(trained)
    assert train["step"] == 2 * 240 // 8 and train["pairs_used"] == 240
    assert train["train_loss"] < 0.69


def test_artifact_is_self_describing_safetensors(trained):
    model_dir = trained / "models/reward_model"
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "reward_model.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    meta = json.loads((model_dir / "reward_model.json").read_text())
    assert meta["max_length"] == 96 and meta["pooling"] == "cls" and len(meta["data_sha256"]) == 64
    assert meta["reward_std"] > 0


def test_curve_has_one_row_per_step_and_the_summary_the_last_one(trained):
    curve = {name: live_series(trained, name) for name in ("epoch", "loss", "accuracy", "lr")}
    assert all([step for step, _ in rows] == list(range(1, 61)) for rows in curve.values())
    assert [epoch for _, epoch in curve["epoch"]] == [1] * 30 + [2] * 30
    summary = train_summary(trained)
    assert {name: summary[name] for name in curve} == {name: rows[-1][1] for name, rows in curve.items()}


def test_eval_scores_are_written_per_pair(trained):
    rows = read_jsonl(trained / "data/eval_scores.jsonl")
    assert [r["index"] for r in rows] == list(range(60))
    accuracy = json.loads((trained / "metrics/eval.json").read_text())["accuracy"]
    assert np.mean([r["correct"] for r in rows]) == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_interrupted_run_resumes_to_the_same_bytes(tmp_path, tiny_base, monkeypatch, precision):
    params = {"train": dict(FAST, epochs=3, checkpoint_every=5, precision=precision)}
    reference = train_in_process(tmp_path / "ref", tiny_base, easy_rows(160), **params)

    real_save, saves = checkpoint.save, []

    def save_then_crash(*args, **kwargs):  # the process dies right after its second checkpoint
        real_save(*args, **kwargs)
        saves.append(kwargs["step"])
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(optimization.checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(tmp_path / "resumed", tiny_base, easy_rows(160), **params)
    assert saves == [5, 10] and not (tmp_path / "resumed/models/trained").exists()
    assert [step for step, _ in live_series(tmp_path / "resumed", "loss")] == list(range(1, 11))  # logged live
    monkeypatch.setattr(optimization.checkpoint, "save", real_save)

    train_in_process(tmp_path / "resumed", tiny_base, easy_rows(160), **params)
    for name in OUTPUTS:
        assert (tmp_path / "resumed" / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list((tmp_path / "resumed").glob(".scratch/train/*/step-*"))  # cleaned up after success


def test_train_precision_is_honoured_and_recorded_resolved(tmp_path, tiny_base):
    """#24: fp32 and bf16 train different weights, each twice to the same bytes; auto is recorded as what it
    resolved to on this machine, in the artifact's metadata and in the training metrics."""
    weights = {}
    for precision, run in (("fp32", "a"), ("bf16", "a"), ("bf16", "b"), ("auto", "a")):
        work = train_in_process(tmp_path / f"{precision}-{run}", tiny_base, easy_rows(48),
                                train=dict(FAST, epochs=1, precision=precision))
        meta = json.loads((work / "models/trained/reward_model.json").read_text())
        metrics = train_summary(work)
        expected = resolve_precision(precision, torch.device("cpu"))
        assert meta["precision"] == metrics["precision"] == expected
        weights[precision, run] = (work / "models/trained/model.safetensors").read_bytes()
    assert weights["fp32", "a"] != weights["bf16", "a"] == weights["bf16", "b"]
    assert weights["auto", "a"] == weights[resolve_precision("auto", torch.device("cpu")), "a"]


def checkpoint_then_crash(work, tiny_base, rows, monkeypatch, **train) -> Path:
    """Train until the first checkpoint (step 5) is written, then die: returns that checkpoint, under the name and
    key the resume code looks for."""
    real_save = checkpoint.save

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(optimization.checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(work, tiny_base, rows, train=dict(FAST, checkpoint_every=5, **train))
    monkeypatch.setattr(optimization.checkpoint, "save", real_save)
    [saved] = work.glob(".scratch/train/*/step-00000005.pt")
    return saved


def test_a_checkpoint_from_other_inputs_is_never_used(tmp_path, tiny_base, monkeypatch, capsys):
    stale = checkpoint_then_crash(tmp_path / "run", tiny_base, easy_rows(80), monkeypatch)
    capsys.readouterr()
    other = {"train": dict(FAST, checkpoint_every=5)}
    for rows, train in ((easy_rows(80, seed=3), {}), (easy_rows(80), {"lr": 1e-3})):  # other data, other lr
        train_in_process(tmp_path / "run", tiny_base, rows, train={**other["train"], **train})
        assert "resuming" not in capsys.readouterr().err
        reference = train_in_process(tmp_path / f"fresh-{len(train)}", tiny_base, rows,
                                     train={**other["train"], **train})
        for name in OUTPUTS:
            assert (tmp_path / "run" / name).read_bytes() == (reference / name).read_bytes(), name
    assert stale.is_file()  # another run's checkpoint is left alone


def test_a_checkpoint_survives_changes_that_only_change_what_is_measured(tmp_path, tiny_base, monkeypatch, capsys):
    rows = [dict(r, prompt=r["prompt"].replace("(case", f"(group {i % 20}) (case")) for i, r in
            enumerate(easy_rows(80))]
    checkpoint_then_crash(tmp_path / "run", tiny_base, rows, monkeypatch, eval_every=2)
    capsys.readouterr()
    changed = dict(FAST, checkpoint_every=5, eval_every=3, stats_pairs=7)
    train_in_process(tmp_path / "run", tiny_base, rows, train=changed)
    assert "resuming from the checkpoint at step 5/" in capsys.readouterr().err
    reference = train_in_process(tmp_path / "fresh", tiny_base, rows, train=changed)
    for name in OUTPUTS[:-1]:  # not the validation plot: its points before the stop keep their schedule (below)
        assert (tmp_path / "run" / name).read_bytes() == (reference / name).read_bytes(), name
    assert train_summary(reference)["stats_pairs"] == 7
    # the validation points scored before the stop keep the schedule they were scored on (every 2 steps)
    steps = [row["step"] for row in live_plot(tmp_path / "run", "train", "validation")]
    assert steps[:2] == [2, 4] and 6 in steps and 8 not in steps


def test_non_finite_loss_stops_with_a_clear_message_and_no_model(tmp_path, tiny_base):
    rows = easy_rows(40)
    rows[7]["margin"] = 1e39  # finite in JSON, infinite in float32: the loss of that batch overflows
    with pytest.raises(UserError) as error:
        train_in_process(tmp_path, tiny_base, rows, train=FAST)
    assert "training diverged at step" in str(error.value) and "train.lr=" in str(error.value)
    assert "No model was written" in str(error.value)
    assert not (tmp_path / "models/trained").exists()
    assert "train_loss" not in train_summary(tmp_path)  # the live summary stops at the last good step


def test_the_live_summary_grows_on_disk_while_training_runs(tmp_path, tiny_base, monkeypatch):
    """What `dvc exp show` reads, read from disk after every optimizer step while the loop is still running: the
    step advances one by one and the per-step files gain a row each; the final metrics come only at the end."""
    real, seen = optimization.checkpoint_or_stop, []

    def read_then_go_on(*args, **kwargs):  # runs inside the loop, right after the step's on_step
        summary = train_summary(tmp_path)
        seen.append((summary["step"], len(live_series(tmp_path, "loss")), "train_loss" in summary))
        return real(*args, **kwargs)

    monkeypatch.setattr(optimization, "checkpoint_or_stop", read_then_go_on)
    train_in_process(tmp_path, tiny_base, easy_rows(48), train=dict(FAST, epochs=1))
    assert seen == [(step, step, False) for step in range(1, 7)]
    assert train_summary(tmp_path)["step"] == 6 and "train_loss" in train_summary(tmp_path)


def test_a_full_dvclive_sync_happens_at_most_every_sync_seconds(tmp_path):
    from rewardkit import tracking

    now = [0.0]
    log = tracking.StageLog(tmp_path / "live", clock=lambda: now[0])
    synced = []
    log.live.next_step = lambda: synced.append(log.live.step)
    for step in range(1, 8):
        now[0] = 4.0 * step  # a step every 4 s: a sync at the steps where 10 s have passed since the last one
        log.log_step(step, {"loss": 1.0 / step})
    assert synced == [3, 6]
    assert json.loads((tmp_path / "live/metrics.json").read_text()) == {"loss": 1 / 7, "step": 7}
