"""The tokenize stage and its token stores: exactly the ids the in-memory encoding gives, memory-mapped, with the
per-pair columns evaluation needs; conversational rows rendered with a chat template or the plain one;
train.max_steps stops training with the schedule following it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rewardkit.config import ModelConfig, TrainConfig
from rewardkit.encoding.families import input_template
from rewardkit.encoding.store import TokenStore
from rewardkit.encoding.templates import encode_both_answers
from rewardkit.encoding.tokenizers import load_saved_tokenizer
from rewardkit.errors import UserError
from rewardkit.training.job import open_store
from tests.conftest import (
    easy_rows,
    live_plot,
    live_series,
    prepare_stage_inputs,
    train_in_process,
    train_paths,
    train_summary,
)


def test_the_store_holds_exactly_the_ids_of_the_in_memory_encoding(tmp_path, tiny_base):
    rows = easy_rows(40) + [{"prompt": "User: " + "what is the rate " * 40 + "\nAssistant:", "chosen": " five",
                             "rejected": " six", "margin": 1.5, "id": "long", "source": "hand"},
                            {"prompt": "User: hi\nAssistant:", "chosen": " x" * 80 + " yes", "rejected": " x" * 80,
                             "id": "cut-identical"}]
    prepare_stage_inputs(tmp_path, tiny_base, rows, train={"max_length": 64})
    store = TokenStore(tmp_path / "data/tokens/train")
    tokenizer = load_saved_tokenizer(str(tmp_path / "data/tokens/tokenizer"))
    from transformers import AutoConfig

    template = input_template(AutoConfig.from_pretrained(tiny_base), tokenizer)
    enc = encode_both_answers(tokenizer, rows, 64, template)
    n = len(rows)
    kept = [i for i in range(n) if enc.ids[i] != enc.ids[n + i]]
    assert len(store) == len(kept) == 41  # the pair that became identical after truncation is left out
    ids, segments = store.sequences(range(len(store)))
    assert [s.tolist() for s in ids] == [enc.ids[i] for i in kept] + [enc.ids[n + i] for i in kept]
    assert segments is None
    assert store.lengths().tolist() == [max(len(enc.ids[i]), len(enc.ids[n + i])) for i in kept]
    assert store.margin.tolist() == [rows[i].get("margin", 0.0) for i in kept]
    assert {k: store.meta[k] for k in ("pairs_read", "pairs_used", "identical_after_truncation")} == {
        "pairs_read": 42, "pairs_used": 41, "identical_after_truncation": 1}
    columns = store.columns("id", "source", "row", "chosen_chars")
    assert columns["id"].tolist()[-1] == "long" and columns["source"].tolist()[-1] == "hand"
    assert columns["row"].tolist() == kept and columns["chosen_chars"].iloc[0] == len(rows[0]["chosen"])
    assert isinstance(store.ids, np.memmap) and store.ids.dtype == np.int32  # 4 bytes a token, paged in on use
    assert store.meta["max_length"] == 64 and store.meta["input_kind"] == "text_pair"
    assert TokenStore(tmp_path / "data/tokens/eval").meta["pairs"] == 1  # eval keeps every pair


def test_conversational_rows_render_with_the_plain_template_or_the_chat_template(tmp_path, tiny_base):
    conv = [{"prompt": [{"role": "user", "content": f"what is {i} plus {i}?"}],
             "chosen": [{"role": "assistant", "content": f"The sum is {2 * i}."}],
             "rejected": [{"role": "assistant", "content": "Probably 7."}]} for i in range(6)]
    plain = [{"prompt": f"User: what is {i} plus {i}?\nAssistant:", "chosen": f" The sum is {2 * i}.",
              "rejected": " Probably 7."} for i in range(6)]
    prepare_stage_inputs(tmp_path / "conv", tiny_base, conv)
    prepare_stage_inputs(tmp_path / "plain", tiny_base, plain)
    stores = [TokenStore(tmp_path / name / "data/tokens/train") for name in ("conv", "plain")]
    assert stores[0].meta["rendering"] == "plain"
    assert [s.tolist() for s in stores[0].sequences(range(6))[0]] == \
        [s.tolist() for s in stores[1].sequences(range(6))[0]]  # the plain template is the shipped data's format

    base = tmp_path / "chat-base"  # the same base, its tokenizer given a ChatML template
    import shutil
    shutil.copytree(tiny_base, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    prepare_stage_inputs(tmp_path / "chat", base, conv)
    chat = TokenStore(tmp_path / "chat/data/tokens/train")
    assert chat.meta["rendering"] == "chat_template"
    tokenizer = load_saved_tokenizer(str(tmp_path / "chat/data/tokens/tokenizer"))
    first = tokenizer.decode(chat.sequence(0))
    assert "start" in first and "assistant" in first and "The sum is 0." in first  # "<|" is unknown to it
    prepare_stage_inputs(tmp_path / "forced", base, conv, model={"chat_template": "plain"})
    assert TokenStore(tmp_path / "forced/data/tokens/train").meta["rendering"] == "plain"


def test_max_steps_stops_training_and_the_schedule_follows(tmp_path, tiny_base):
    work = train_in_process(tmp_path, tiny_base, easy_rows(64),
                            train={"max_length": 64, "batch_size": 8, "epochs": 3, "max_steps": 5, "lr": 1e-3,
                                   "warmup_ratio": 0.0, "scheduler": "linear", "checkpoint_every": 0})
    lrs = [lr for _, lr in live_series(work, "lr")]
    assert len(lrs) == 5 and lrs == pytest.approx([1e-3 * (1 - s / 5) for s in range(5)])  # linear over 5 steps
    metrics = train_summary(work)
    assert metrics["step"] == 5 and metrics["max_steps"] == 5


def test_training_statistics_come_from_an_even_sample_when_asked(tmp_path, tiny_base):
    work = train_in_process(tmp_path, tiny_base, easy_rows(40),
                            train={"max_length": 64, "batch_size": 8, "epochs": 1, "stats_pairs": 10,
                                   "checkpoint_every": 0})
    assert train_summary(work)["stats_pairs"] == 10


def test_a_store_from_other_params_is_refused(tmp_path, tiny_base):
    prepare_stage_inputs(tmp_path, tiny_base, easy_rows(8), train={"max_length": 64})
    with pytest.raises(UserError, match="run `dvc repro tokenize`"):
        open_store(train_paths(tmp_path), ModelConfig(name=str(tiny_base)), TrainConfig(max_length=96))


def test_validation_during_training_is_carved_from_the_training_split_by_prompt(tmp_path, tiny_base):
    import shutil

    from rewardkit.config import build
    from rewardkit.training.distributed import Ranks
    from rewardkit.training.job import carve_validation, train_reward_model

    rows = [dict(r, prompt=r["prompt"].replace("(case", f"(group {i % 25}) (case")) for i, r in
            enumerate(easy_rows(100))]  # 25 prompts of 4 pairs
    params = prepare_stage_inputs(tmp_path, tiny_base, rows, train={
        "max_length": 64, "batch_size": 8, "epochs": 1, "lr": 1e-3, "eval_every": 3, "validation_fraction": 0.2,
        "checkpoint_every": 0})
    shutil.rmtree(tmp_path / "data/tokens/eval")  # the eval split is never read during training
    (tmp_path / "data/eval.jsonl").unlink()
    cfg = build(TrainConfig, params)
    store = TokenStore(tmp_path / "data/tokens/train")
    training, validation = carve_validation(store, cfg)
    keys = store.columns("prompt_key")["prompt_key"]
    assert 20 <= len(validation) < 24 and len(training) + len(validation) == 100
    assert not set(keys[validation.indices]) & set(keys[training.indices])  # whole prompts on one side
    train_reward_model(train_paths(tmp_path), build(ModelConfig, params), cfg, torch_cpu(), Ranks())
    points = live_plot(tmp_path, "train", "validation")
    steps = -(-len(training) // 8)
    assert [p["step"] for p in points] == sorted({*range(3, steps + 1, 3), steps})
    assert all(set(p) == {"step", "val_loss", "val_accuracy"} for p in points)
    metrics = train_summary(tmp_path)
    assert metrics["validation_pairs"] == len(validation) and metrics["step"] == steps
    best = min(points, key=lambda p: p["val_loss"])
    assert (metrics["best_validation_step"], metrics["best_validation_loss"]) == (best["step"],
                                                                                  round(best["val_loss"], 6))
    assert (metrics["val_loss"], metrics["val_accuracy"]) == (points[-1]["val_loss"], points[-1]["val_accuracy"])
    assert [s for s, _ in live_series(tmp_path, "loss")] == list(range(1, steps + 1))  # every step, validated or not
    assert not (tmp_path / "metrics/train/plots/metrics/val_loss.tsv").exists()  # only the custom plot


def test_without_eval_every_the_validation_plot_is_empty(tmp_path, tiny_base):
    work = train_in_process(tmp_path, tiny_base, easy_rows(16), train={"max_length": 64, "checkpoint_every": 0})
    assert live_plot(work, "train", "validation") == []  # there, so `dvc plots show` finds every plot
    assert not {"best_validation_step", "val_loss"} & set(train_summary(work))


def torch_cpu():
    import torch

    return torch.device("cpu")
