"""train.lora: adapters on the body (the fast forwards call them), the head trained fully, the released model merged
(loads with the Auto classes, no peft layers) and the adapter beside it; bad targets stop with one line."""
from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification

from rewardkit.config import LoraSettings, TrainConfig
from rewardkit.errors import UserError
from rewardkit.modeling.artifact import ADAPTER_DIR
from rewardkit.modeling.batching import pad
from rewardkit.modeling.model import RewardModel
from rewardkit.training import lora
from tests.conftest import easy_rows, train_in_process
from tests.unit import test_fast_bert, test_fast_deberta
from tests.unit.test_memory import rewards_grads_and_saved_bytes

MODELS = {  # name: (transformers model, inputs, the head's modules)
    "deberta": (test_fast_deberta.tiny_model, test_fast_deberta.batch, ["pooler", "classifier"]),
    "bert": (test_fast_bert.tiny_model, test_fast_bert.batch, ["classifier"]),  # BERT's pooler is the base's
    "roberta": (lambda: test_fast_bert.tiny_model("roberta", type_vocab_size=1),
                lambda: test_fast_bert.batch(token_types=False, pad_id=1), ["classifier"]),
}


def adapted(name: str, r: int = 4) -> RewardModel:
    """A tiny model with LoRA adapters whose B matrices are random (peft starts them at zero: no effect)."""
    model = RewardModel(MODELS[name][0](), "cls")
    lora.apply_lora(model, LoraSettings(r=r))
    torch.manual_seed(1)
    for module_name, param in model.named_parameters():
        if "lora_B" in module_name:
            param.data.normal_(0, 0.1)
    return model.train()


@pytest.mark.parametrize("name", list(MODELS))
def test_the_fast_forward_runs_the_adapters_and_trains_only_them_and_the_head(name):
    model = adapted(name)
    slow = RewardModel(model.hf, "cls", fast=False)
    assert model.fast or model.fast_bert
    inputs = MODELS[name][1]()
    got, got_grads, _ = rewards_grads_and_saved_bytes(model, inputs)
    want, want_grads, _ = rewards_grads_and_saved_bytes(slow, inputs)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got_grads.keys() == want_grads.keys()
    atol = 1e-5 * max(grad.abs().max().item() for grad in want_grads.values())
    for key, grad in want_grads.items():
        torch.testing.assert_close(got_grads[key], grad, rtol=1e-3, atol=atol, msg=lambda m: f"{key}: {m}")
    heads = MODELS[name][2]
    assert lora.head_modules(model.hf) == heads
    trained = set(got_grads)
    assert all(".lora_A." in k or ".lora_B." in k or k.split(".")[1] in heads for k in trained)
    assert {k for k in trained if ".modules_to_save." in k} == {
        f"hf.{k}" for k, p in model.hf.named_parameters() if ".modules_to_save." in k}  # the whole head
    assert not any("lora_" in k and k.split(".")[1] in heads for k in trained)  # no adapter on the head
    plain = MODELS[name][0]()
    linears = sum(isinstance(m, torch.nn.Linear) for m in getattr(plain, plain.base_model_prefix).modules())
    assert linears >= 6 * plain.config.num_hidden_layers  # q, k, v, attention out, intermediate, output, ...
    assert sum(1 for k in trained if "lora_" in k) == 2 * linears  # all-linear: A and B on each of the body's


@pytest.mark.parametrize("targets,says", [
    (["nonexistent"], "it names no module of the body"),
    (["classifier"], "it names no module of the body"),  # the head is trained in full, not adapted
    (["LayerNorm"], "is not supported"),  # a module kind peft has no adapter for
])
def test_a_target_peft_cannot_adapt_stops_with_one_line_listing_the_linear_layers(targets, says):
    model = RewardModel(test_fast_deberta.tiny_model(), "cls")
    with pytest.raises(UserError) as raised:
        lora.apply_lora(model, LoraSettings(r=4, target_modules=targets))
    message = str(raised.value)
    assert "\n" not in message and says in message
    assert message.startswith(f"train.lora.target_modules={targets!r} on DebertaV2ForSequenceClassification")
    assert message.endswith("linear layers: dense, key_proj, query_proj, value_proj (or train.lora.r=0)")


@pytest.mark.parametrize("lora_params,problem", [
    ({"r": -1}, "train.lora.r: must be at least 0, got -1"),
    ({"rank": 8}, "train.lora: unknown key(s) rank; valid keys: r, alpha, dropout, target_modules"),
    ({"target_modules": []}, "train.lora.target_modules: expected all-linear"),
    ({"dropout": 1.0}, "train.lora.dropout: must be in [0, 1), got 1.0"),
    (8, "train.lora: expected a mapping of r, alpha, dropout, target_modules, got 8"),
])
def test_bad_lora_params_stop_with_one_line_naming_the_key(lora_params, problem):
    with pytest.raises(UserError, match="^params.yaml: ") as raised:
        TrainConfig(lora=lora_params)
    assert problem in str(raised.value)


def test_the_train_stage_releases_a_merged_model_and_the_adapter_beside_it(tmp_path, tiny_base):
    work = train_in_process(tmp_path, tiny_base, easy_rows(96), train={
        "max_length": 64, "batch_size": 8, "epochs": 1, "lr": 3e-3, "checkpoint_every": 0,
        "lora": {"r": 4, "alpha": 8}})
    model_dir = work / "models/trained"
    assert not (model_dir / "adapter_config.json").exists()  # else transformers would load it as an adapter
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
    assert not any(part in n for n in names for part in ("lora_", "base_layer", "modules_to_save"))
    meta = json.loads((model_dir / "reward_model.json").read_text())
    assert meta["lora"] == {"r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": "all-linear"}
    adapter = json.loads((model_dir / ADAPTER_DIR / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and sorted(adapter["modules_to_save"]) == ["classifier", "pooler"]
    assert adapter["base_model_name_or_path"] == str(tiny_base)

    merged = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()  # plain transformers
    base = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=1)
    with_adapter = PeftModel.from_pretrained(base, model_dir / ADAPTER_DIR).eval()
    ids, mask = pad([[1, *range(5, 5 + n), 2] for n in (3, 17, 40)], pad_id=0)
    with torch.inference_mode():
        want = with_adapter(input_ids=ids, attention_mask=mask).logits[:, 0]
        got = merged(input_ids=ids, attention_mask=mask).logits[:, 0]
        with with_adapter.disable_adapter():  # the base, its head at its init
            untrained = with_adapter(input_ids=ids, attention_mask=mask).logits[:, 0]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert (got - untrained).abs().max() > 1e-3  # the adapters and head were trained and are in both
    query = [m.deberta.encoder.layer[0].attention.self.query_proj for m in (merged, with_adapter.base_model.model)]
    assert not torch.equal(query[0].weight, query[1].base_layer.weight)  # merged: the update is in the body
