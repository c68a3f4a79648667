"""Typed params: values cast from DVC's strings, unknown keys and bad values named in one clear message."""
import pytest

from rewardkit.config import EvaluateConfig, ModelConfig, SplitConfig, TrainConfig, ValidateConfig, build
from rewardkit.errors import UserError


@pytest.mark.parametrize("section,values,words", [
    (TrainConfig, {"lr": -1e-5}, ["train.lr", "positive"]),
    (TrainConfig, {"lr": "fast"}, ["train.lr", "expected a number"]),
    (TrainConfig, {"batch_size": 10, "nproc_per_node": 4}, ["train.batch_size", "nproc_per_node=4"]),
    (TrainConfig, {"scheduler": "zigzag"}, ["train.scheduler", "cosine"]),
    (TrainConfig, {"device": "tpu"}, ["train.device"]),
    (TrainConfig, {"learning_rate": 1e-5}, ["unknown key", "train.learning_rate"]),
    (ModelConfig, {"pooling": "max"}, ["model.pooling", "cls, mean"]),
    (ModelConfig, {"name": "./no/such/dir"}, ["model.name", "neither a local directory"]),
    (ModelConfig, {"name": "not a model id!"}, ["model.name", "hub id"]),
    (SplitConfig, {"eval_fraction": 0}, ["split.eval_fraction", "must be in (0, 1)"]),
    (SplitConfig, {"eval_fraction": 1}, ["split.eval_fraction"]),
    (SplitConfig, {"eval_fraction": 1.5}, ["split.eval_fraction"]),
    (ValidateConfig, {"max_reject_fractoin": 0.1}, ["unknown key", "validate.max_reject_fractoin"]),
    (ValidateConfig, {"max_reject_fraction": 2}, ["validate.max_reject_fraction", "[0, 1]", "2"]),
    (ValidateConfig, {"max_line_bytes": "big"}, ["validate.max_line_bytes", "expected a number"]),
    (EvaluateConfig, {"calibration_bins": 1}, ["evaluate.calibration_bins"]),
])
def test_bad_values_fail_naming_the_key(section, values, words):
    with pytest.raises(UserError) as e:
        build(section, {section.section: values})
    assert all(w in str(e.value) for w in words), str(e.value)
    assert str(e.value).startswith("params.yaml: ")


def test_dvc_strings_are_cast():
    cfg = build(TrainConfig, {"train": {"lr": "1e-06", "epochs": "2", "use_margin": "false"}})
    assert (cfg.lr, cfg.epochs, cfg.use_margin) == (1e-6, 2, False)
    assert build(ModelConfig, {"model": {"name": "microsoft/deberta-v3-small"}}).name == "microsoft/deberta-v3-small"


def test_a_base_directory_without_config_is_a_clear_error(tmp_path):
    from rewardkit.modeling.loading import load_hf_classifier
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="has no config.json"):
        load_hf_classifier(str(tmp_path))


def test_a_directory_that_is_not_a_trained_reward_model_is_a_clear_error(tmp_path):
    from rewardkit.modeling.artifact import load_artifact
    with pytest.raises(UserError, match="reward_model.json is missing"):
        load_artifact(tmp_path)
