"""The trained artifact is a plain Hugging Face model: the Auto classes and the text-classification pipeline load
it without trust_remote_code and, for pooling cls, compute exactly our reward. Pooling mean needs our loader."""
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from rewardkit import RewardModel, RewardScorer, save_artifact

# short enough for the artifact's max_length (64): no truncation, so tokenizer(prompt, response) is our encoding
PAIRS = [("User: what is 2 plus 3?\nAssistant:", " The sum is 5."),
         ("User: what is 2 plus 3?\nAssistant:", " Probably about 6."),
         ("User: hi\nAssistant:", " Hello.")]
PROMPTS, RESPONSES = (list(x) for x in zip(*PAIRS))


@pytest.fixture(scope="module")
def model_dir(trained_model):
    return trained_model / "models" / "reward_model"


@pytest.fixture(scope="module")
def ours(model_dir):
    return RewardScorer.from_pretrained(model_dir, device="cpu", precision="fp32")


def hf_rewards(model, tokenizer, prompts, responses) -> list[float]:
    with torch.inference_mode():
        return [model(**tokenizer(p, r, return_tensors="pt")).logits[0, 0].item() for p, r in zip(prompts, responses)]


def test_artifact_is_safetensors_with_a_one_label_head(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert "model.safetensors" in names and "pytorch_model.bin" not in names
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["DebertaV2ForSequenceClassification"]
    assert len(config["id2label"]) == 1 and "auto_map" not in config  # auto_map is what needs trust_remote_code


def test_auto_classes_compute_our_reward(model_dir, ours):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    for (p, r), ids in zip(PAIRS, ours.encode(PROMPTS, RESPONSES)):
        assert tokenizer(p, r)["input_ids"] == ids and len(ids) < ours.meta["max_length"]
    expected = ours.score(PROMPTS, RESPONSES)
    assert hf_rewards(model, tokenizer, PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-5)
    assert max(expected) - min(expected) > 1e-3  # the rewards differ, so matching each one means something


def test_text_classification_pipeline_takes_pairs_as_text_and_text_pair(model_dir, ours):
    pipe = pipeline("text-classification", model=str(model_dir), function_to_apply="none", device="cpu")
    expected = ours.score(PROMPTS, RESPONSES)
    # one dict is one pair (the answer is a dict); a list of dicts gives a list
    assert pipe({"text": PROMPTS[0], "text_pair": RESPONSES[0]})["score"] == pytest.approx(expected[0], abs=1e-5)
    batch = pipe([{"text": p, "text_pair": r} for p, r in PAIRS])
    assert [out["score"] for out in batch] == pytest.approx(expected, abs=1e-5)
    # a plain string is ONE text, `[CLS] prompt+response [SEP]`: the same model, but not the input it was trained on
    text = PROMPTS[0] + RESPONSES[0]
    single = pipe(text)[0]["score"]
    with torch.inference_mode():
        assert single == pytest.approx(pipe.model(**pipe.tokenizer(text, return_tensors="pt")).logits[0, 0].item(),
                                       abs=1e-6)
    assert abs(single - expected[0]) > 1e-5


def test_pooling_mean_loads_anywhere_but_only_our_loader_applies_it(ours, tmp_path):
    mean_model = RewardModel(ours.model.hf, "mean").eval()  # the same weights read through masked-mean pooling
    save_artifact(mean_model, ours.tokenizer, tmp_path / "mean", {**ours.meta, "pooling": "mean"})
    mean_scorer = RewardScorer(mean_model, ours.tokenizer, ours.meta, torch.device("cpu"), "fp32")
    mean_rewards = mean_scorer.score(PROMPTS, RESPONSES)

    loaded = RewardScorer.from_pretrained(tmp_path / "mean", device="cpu", precision="fp32")
    assert loaded.model.pooling == "mean"
    assert loaded.score(PROMPTS, RESPONSES) == pytest.approx(mean_rewards, abs=1e-5)
    # AutoModelForSequenceClassification loads the same directory without complaint, but runs the standard
    # head on the [CLS] position: the cls-pooled number, not the reward this model was trained to give
    auto = AutoModelForSequenceClassification.from_pretrained(tmp_path / "mean").eval()
    auto_rewards = hf_rewards(auto, AutoTokenizer.from_pretrained(tmp_path / "mean"), PROMPTS, RESPONSES)
    assert auto_rewards == pytest.approx(ours.score(PROMPTS, RESPONSES), abs=1e-5)
    assert all(abs(a - m) > 1e-4 for a, m in zip(auto_rewards, mean_rewards))
