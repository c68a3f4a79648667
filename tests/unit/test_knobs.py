"""Each train knob the other tests leave alone, exercised so that the test fails if the knob were ignored:
grad_accum_steps, compile, use_margin (through the token store, in training and in the eval losses) and
center_rewards_coef. (eval_every, validation_fraction and stats_pairs: tests/unit/test_store.py; calibration_bins:
tests/e2e/test_pipeline.py.)"""
import json

import numpy as np
import pytest
import torch

from rewardkit.config import TrainConfig, build
from rewardkit.encoding.store import TokenStore
from rewardkit.modeling.model import load_base
from rewardkit.modeling.objective import bt_loss_per_pair
from rewardkit.training import loop
from rewardkit.training.distributed import Ranks
from tests.conftest import (
    easy_rows,
    prepare_stage_inputs,
    read_jsonl,
    stage_args,
    train_in_process,
    train_summary,
)
from tests.conftest import (
    live_curve as curve,
)

FAST = {"max_length": 96, "batch_size": 8, "epochs": 1, "lr": 3e-3, "warmup_ratio": 0.0, "checkpoint_every": 0}


def margin_rows(n: int, margin: float, seed: int = 0) -> list[dict]:
    return [dict(r, margin=margin) for r in easy_rows(n, seed)]


def gradients_of_one_step(work, tiny_base, params: dict, grad_accum_steps: int) -> tuple[dict, torch.Tensor, list]:
    """(parameter gradients, (loss sum, correct) of the step, micro-batch sizes the forward saw) of one optimizer
    step over the first 8 training pairs with the given accumulation."""
    cfg = build(TrainConfig, {"train": {**params["train"], "grad_accum_steps": grad_accum_steps}})
    store = TokenStore(work / "data/tokens/train")
    model, tokenizer = load_base(str(tiny_base), "cls", cfg.seed)
    sizes = []

    def forward(*inputs, **kwargs):
        sizes.append(inputs[0].shape[0] // 2)
        return model(*inputs, **kwargs)

    margin = torch.from_numpy(store.margin)
    sums, _ = loop.accumulate_gradients(model, forward, store, np.arange(8), margin, cfg, torch.device("cpu"),
                                        Ranks(), tokenizer.pad_token_id)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, sums, sizes


def test_grad_accum_steps_splits_the_batch_and_keeps_the_step_in_fp32(tmp_path, tiny_base):
    params = prepare_stage_inputs(tmp_path, tiny_base, margin_rows(16, 0.5), train=FAST)
    whole, whole_sums, whole_sizes = gradients_of_one_step(tmp_path, tiny_base, params, 1)
    split, split_sums, split_sizes = gradients_of_one_step(tmp_path, tiny_base, params, 4)
    assert whole_sizes == [8] and split_sizes == [2, 2, 2, 2]  # 4 micro-batches of b/k pairs
    assert torch.allclose(split_sums, whole_sums, rtol=0, atol=1e-6)
    assert whole.keys() == split.keys()
    scale = max(g.abs().max().item() for g in whole.values())
    for name, grad in whole.items():  # the gradient of the mean over the 8 pairs, however it is accumulated
        assert (split[name] - grad).abs().max().item() <= 1e-6 * max(1.0, scale), name


def test_grad_accum_steps_trains_the_same_run(tmp_path, tiny_base):
    runs = [curve(train_in_process(tmp_path / str(k), tiny_base, easy_rows(48), train=dict(FAST, grad_accum_steps=k)))
            for k in (1, 2)]
    assert [r["step"] for r in runs[0]] == [r["step"] for r in runs[1]] == list(range(1, 7))
    assert np.allclose([r["loss"] for r in runs[0]], [r["loss"] for r in runs[1]], rtol=0, atol=1e-4)


def test_use_margin_reaches_the_training_loss_through_the_token_store(tmp_path, tiny_base):
    rows = margin_rows(32, 6.0)  # at initialisation r+ - r- is ~0: the loss is ~-log σ(-6) ≈ 6 with the margin
    with_margin = curve(train_in_process(tmp_path / "on", tiny_base, rows, train=dict(FAST, lr=1e-6)))
    without = curve(train_in_process(tmp_path / "off", tiny_base, rows, train=dict(FAST, lr=1e-6, use_margin=False)))
    assert with_margin[0]["loss"] > 5.0 and without[0]["loss"] < 1.0


def test_the_eval_losses_follow_the_training_margin_rule(tmp_path, tiny_base):
    from rewardkit.config import EvaluateConfig
    from rewardkit.evaluation.job import evaluate_model
    from tests.conftest import evaluate_paths

    params = {"train": dict(FAST, epochs=1), "evaluate": {"batch_size": 16}}
    work = train_in_process(tmp_path, tiny_base, margin_rows(16, 0.5), margin_rows(12, 2.0, seed=1), **params)
    (work / "eval_sets").mkdir(exist_ok=True)
    losses = {}
    for use_margin in (True, False):
        evaluate_model(evaluate_paths(work), build(EvaluateConfig, params), device="cpu", use_margin=use_margin)
        scores = read_jsonl(work / "data/eval_scores.jsonl")
        chosen, rejected = (torch.tensor([s[k] for s in scores]) for k in ("reward_chosen", "reward_rejected"))
        expected = bt_loss_per_pair(chosen, rejected, torch.full_like(chosen, 2.0 if use_margin else 0.0)).mean()
        losses[use_margin] = json.loads((work / "metrics/eval.json").read_text())["loss"]
        assert losses[use_margin] == pytest.approx(expected.item(), abs=1e-4)  # eval.json rounds to 4 places
    assert losses[True] > losses[False] + 1.0


def test_the_evaluate_stage_reads_train_use_margin(tmp_path, monkeypatch):
    import stages.evaluate as stage

    seen = {}
    monkeypatch.setattr(stage, "evaluate_model", lambda *a, **kw: seen.update(kw))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train:\n  use_margin: false\n")
    stage.main(stage_args("evaluate"))
    assert seen["use_margin"] is False


def test_center_rewards_coef_pulls_the_reward_mean_to_zero(tmp_path, tiny_base):
    train = dict(FAST, epochs=2, lr=1e-2)
    means = [abs(train_summary(train_in_process(tmp_path / str(c), tiny_base, easy_rows(48), train=dict(
        train, center_rewards_coef=c)))["reward_mean"]) for c in (0.0, 1.0)]
    assert means[0] > 0.1 and means[1] < means[0] / 5


def test_compile_traces_transformers_forward_at_lengths_padded_to_64(tmp_path, tiny_base, monkeypatch):
    """The CPU proxy of train.compile: torch.compile with the eager backend (dynamo traces the model, the graph runs
    as is), so it runs in seconds; tests/e2e/test_compile.py runs the default backend (inductor)."""
    from rewardkit.modeling.fast import deberta as fast_deberta

    compiled, widths, fast_calls = [], [], []
    real_compile, real_pad, real_fast = torch.compile, loop.batch_for, fast_deberta.rewards
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or real_compile(m, backend="eager"))
    monkeypatch.setattr(loop, "batch_for", lambda *a, **kw: widths.append((b := real_pad(*a, **kw)).input_ids.shape[1])
                        or b)
    monkeypatch.setattr(fast_deberta, "rewards", lambda *a, **kw: fast_calls.append(1) or real_fast(*a, **kw))
    runs, seen = {}, {}
    for on in (True, False):
        widths.clear(), fast_calls.clear()
        runs[on] = curve(train_in_process(tmp_path / str(on), tiny_base, easy_rows(32), train=dict(FAST, compile=on)))
        seen[on] = (list(widths), len(fast_calls))
    assert len(compiled) == 1 and len(seen[True][0]) == len(runs[True]) == 4
    assert all(w % 64 == 0 for w in seen[True][0]) and not all(w % 64 == 0 for w in seen[False][0])
    # compiled training steps run transformers' forward; the uncompiled ones (and scoring, never compiled) the fast one
    assert seen[False][1] - seen[True][1] == len(runs[False])
    assert np.allclose([r["loss"] for r in runs[True]], [r["loss"] for r in runs[False]], rtol=0, atol=1e-4)
