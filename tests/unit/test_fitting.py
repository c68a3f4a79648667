"""A model whose fp32 weights do not fit the device is loaded in bf16 (said in one line) by evaluate, score and
serve (all through load_artifact / RewardScorer); one too big even then stops with one line."""
from __future__ import annotations

import pytest
import torch

from rewardkit.errors import UserError
from rewardkit.modeling import fitting
from rewardkit.modeling.artifact import load_artifact
from rewardkit.scoring.scorer import RewardScorer
from tests.conftest import easy_rows

CPU = torch.device("cpu")


def free(monkeypatch, fraction_of_weights: float, model_dir) -> None:
    room = int(fitting.weight_bytes(model_dir) * fraction_of_weights)
    monkeypatch.setattr(fitting, "free_bytes", lambda device: room)


def test_a_model_that_fits_loads_as_saved(trained_model, capsys):
    model, _, _ = load_artifact(trained_model / "models/reward_model", CPU)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert "bf16" not in capsys.readouterr().err


def test_too_little_memory_for_fp32_loads_bf16_and_says_so(trained_model, monkeypatch, capsys):
    model_dir = trained_model / "models/reward_model"
    rows = easy_rows(6, seed=5)
    prompts, responses = [r["prompt"] for r in rows], [r["chosen"] for r in rows]
    want = RewardScorer.from_pretrained(model_dir, device="cpu").rewards(prompts, responses)
    free(monkeypatch, 1.0, model_dir)  # room for 1.0x the fp32 weights: not with the headroom, half of it is
    scorer = RewardScorer.from_pretrained(model_dir, device="cpu")
    head = {f"hf.{name}" for name, _ in scorer.model.hf.classifier.named_parameters(prefix="classifier")}
    dtypes = {name: p.dtype for name, p in scorer.model.named_parameters()}
    assert {d for n, d in dtypes.items() if n not in head} == {torch.bfloat16}
    assert {dtypes[n] for n in head} == {torch.float32}  # the score head stays fp32, as everywhere
    lines = [line for line in capsys.readouterr().err.splitlines() if "bf16" in line]
    assert len(lines) == 1 and lines[0].startswith(f"model: {model_dir}'s ") and "loading it in bf16" in lines[0]
    got = scorer.rewards(prompts, responses)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.05 * want.abs().max().item())


def test_a_model_too_big_even_in_bf16_stops_with_one_line(trained_model, monkeypatch):
    model_dir = trained_model / "models/reward_model"
    free(monkeypatch, 0.5, model_dir)
    with pytest.raises(UserError, match=r"needs [\d.]+ GB even in bf16 but cpu has [\d.]+ GB free: score it on a "
                                        r"device with more memory"):
        load_artifact(model_dir, CPU)


def test_evaluate_loads_in_bf16_when_fp32_does_not_fit(trained_model, tmp_path, monkeypatch, capsys):
    import json
    import shutil

    from rewardkit.config import EvaluateConfig, build
    from rewardkit.evaluation.job import evaluate_model
    from tests.conftest import evaluate_paths

    work = shutil.copytree(trained_model, tmp_path / "work", symlinks=True)
    free(monkeypatch, 1.0, work / "models/trained")
    metrics = evaluate_model(evaluate_paths(work), build(EvaluateConfig, {}), device="cpu")
    assert "loading it in bf16" in capsys.readouterr().err
    fp32 = json.loads((trained_model / "metrics/eval.json").read_text())
    assert metrics["pairs"] == fp32["pairs"] and metrics["accuracy"] == pytest.approx(fp32["accuracy"], abs=0.1)
