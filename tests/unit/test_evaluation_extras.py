"""Evaluation users can act on: breakdowns by source and subset, extra evaluation sets in every accepted format,
RewardBench sections, the released model's card, and a summary that fits a terminal."""
from __future__ import annotations

import gzip
import json
import shutil

import pandas as pd
import pytest
import torch
from huggingface_hub import ModelCard

from rewardkit.config import EvaluateConfig, ValidateConfig, build
from rewardkit.errors import UserError
from rewardkit.evaluation.breakdowns import RB_EXAMPLE_COUNTS, by_group, pair_frame, rewardbench_sections
from rewardkit.evaluation.job import evaluate_model
from rewardkit.evaluation.summary import WIDTH, summary_lines
from rewardkit.modeling.devices import resolve_precision
from tests.conftest import easy_rows, evaluate_paths, live_plot, read_jsonl, train_in_process, write_jsonl

TRAIN = {"max_length": 64, "batch_size": 8, "epochs": 1, "lr": 1e-2, "warmup_ratio": 0.0, "checkpoint_every": 0}


def tagged(rows: list[dict], **fields) -> list[dict]:
    """Rows with fields cycled through: tagged(rows, source=["a", "b"]) gives a, b, a, b, ..."""
    return [{**r, **{k: v[i % len(v)] for k, v in fields.items()}} for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_base):
    eval_rows = tagged(easy_rows(24, seed=2), source=["forum", "forum", "docs"], subset=["math-prm", "hep-go"])
    work = train_in_process(tmp_path_factory.mktemp("eval-extras"), tiny_base, easy_rows(32, seed=1), eval_rows,
                            train=TRAIN)
    return work


def evaluate(work, extra_sets: dict) -> dict:
    params = {"evaluate": {"batch_size": 16, "calibration_bins": 10, "extra_sets": extra_sets}}
    return evaluate_model(evaluate_paths(work), build(EvaluateConfig, params), ValidateConfig(max_reject_fraction=0.2),
                          device="cpu")


def test_breakdowns_by_source_and_subset_add_up(work):
    metrics = json.loads((work / "metrics/eval.json").read_text())
    by_source, by_subset = metrics["by_source"], metrics["by_subset"]
    assert {k: v["pairs"] for k, v in by_source.items()} == {"docs": 8, "forum": 16}
    overall = sum(v["accuracy"] * v["pairs"] for v in by_source.values()) / metrics["pairs"]
    assert overall == pytest.approx(metrics["accuracy"], abs=1e-5)
    assert set(by_subset) == {"math-prm", "hep-go"} and set(metrics["rewardbench"]) == {"Reasoning", "Score"}
    plot = live_plot(work, "eval", "accuracy_by_group")
    assert set(plot[0]) == {"group", "accuracy", "pairs"} and plot[0]["group"] == "eval: source=docs"
    assert len(plot) == 4


def test_no_breakdown_without_the_fields(tmp_path, tiny_base):
    work = train_in_process(tmp_path, tiny_base, easy_rows(16, seed=1), easy_rows(8, seed=2), train=TRAIN)
    metrics = json.loads((work / "metrics/eval.json").read_text())
    assert not {"by_source", "by_subset", "rewardbench"} & set(metrics)
    rows = live_plot(work, "eval", "accuracy_by_group")
    assert rows == [{"group": "eval: all pairs", "accuracy": metrics["accuracy"], "pairs": 8}]


def test_group_metrics_are_the_definitions():
    chosen, rejected = torch.tensor([2.0, 0.0, 1.0, 0.5]), torch.tensor([1.0, 0.0, 3.0, 0.5])
    pairs = pair_frame(chosen, rejected, torch.zeros(4), torch.tensor([5, -1, 0, 2]))
    groups = by_group(pairs, pd.Series(["a", "a", "b", None]))
    assert groups["a"] == {"pairs": 2, "accuracy": 0.75, "loss": pytest.approx(
        (-torch.nn.functional.logsigmoid(torch.tensor([1.0, 0.0]))).mean().item()), "mean_margin": 0.5,
        "baseline_longer_wins_accuracy": 0.5}
    assert groups["b"]["accuracy"] == 0.0 and groups["(none)"]["accuracy"] == 0.5  # a tie counts one half


def test_rewardbench_sections_weigh_subsets_by_their_size():
    acc = {"math-prm": 1.0, "hep-go": 0.0, "hep-js": 0.5, "alpacaeval-easy": 0.8, "my-own-subset": 0.1}
    sections = rewardbench_sections(acc)
    reasoning = (984 * 1.0 + 164 * 0.0 + 164 * 0.5) / (984 + 164 + 164)
    assert sections == {"Chat": pytest.approx(0.8), "Reasoning": pytest.approx(reasoning),
                        "Score": pytest.approx((0.8 + reasoning) / 2)}
    assert "my-own-subset" not in RB_EXAMPLE_COUNTS


def test_extra_sets_in_every_format_are_validated_scored_and_broken_down(work):
    sets = work / "eval_sets"
    write_jsonl(sets / "regressions.jsonl", tagged(easy_rows(10, seed=7), source=["x", "y"]) + ["[1]"])
    hh = [{"chosen": f"\n\nHuman: {r['prompt'][6:-11]}\n\nAssistant:{r['chosen']}",
           "rejected": f"\n\nHuman: {r['prompt'][6:-11]}\n\nAssistant:{r['rejected']}"} for r in easy_rows(6, seed=8)]
    (sets / "hh.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in hh).encode()))
    rb = [{"prompt": [{"role": "user", "content": r["prompt"][6:-11]}],
           "chosen": [{"role": "assistant", "content": r["chosen"].strip()}],
           "rejected": [{"role": "assistant", "content": r["rejected"].strip()}], "subset": s}
          for r, s in zip(easy_rows(8, seed=9), ["alpacaeval-easy", "mt-bench-hard"] * 4)]
    pd.DataFrame(rb).to_parquet(sets / "rb.parquet")
    metrics = evaluate(work, {"regressions": f"{sets}/regressions.jsonl", "hh": f"{sets}/hh.jsonl.gz",
                              "rb": f"{sets}/rb.parquet"})
    extra = metrics["extra_sets"]
    assert {k: v["pairs"] for k, v in extra.items()} == {"regressions": 10, "hh": 6, "rb": 8}
    assert extra["regressions"]["validate"]["rejected_by_reason"] == {"not_object": 1}
    assert extra["hh"]["validate"]["format"] == "implicit" and extra["rb"]["validate"]["format"] == "conversational"
    assert set(extra["regressions"]["by_source"]) == {"x", "y"}
    assert set(extra["rb"]["rewardbench"]) == {"Chat", "Chat Hard", "Score"}
    assert json.loads((work / "metrics/eval.json").read_text())["extra_sets"]["rb"]["pairs"] == 8
    groups = {row["group"] for row in live_plot(work, "eval", "accuracy_by_group")}
    assert {"regressions: source=x", "rb: subset=mt-bench-hard"} <= groups
    assert read_jsonl(work / "data/extra_sets/regressions/rejects.jsonl")[0]["reason"] == "not_object"


def test_extra_set_paths_must_exist_under_the_tracked_directory(work, tmp_path):
    write_jsonl(tmp_path / "outside.jsonl", easy_rows(2))
    for extra, words in (({"a": str(tmp_path / "outside.jsonl")}, "outside"),
                         ({"a": f"{work}/eval_sets/missing.jsonl"}, "file not found"),
                         ({"bad name!": "x"}, "names are")):
        with pytest.raises(UserError, match=words):
            evaluate(work, extra)
    write_jsonl(work / "eval_sets/dirty.jsonl", easy_rows(3) + ["[1]", "[2]"])
    for extra, words in (({"dirty": f"{work}/eval_sets/dirty.jsonl"}, "2 of 5 rows of .* rejected .not_object 2."),):
        with pytest.raises(UserError, match=words):
            evaluate(work, extra)


def test_the_released_model_has_a_card_with_the_metrics(work):
    evaluate(work, {})
    release = work / "models/reward_model"
    assert {"model.safetensors", "config.json", "reward_model.json", "README.md"} <= {p.name for p in
                                                                                      release.iterdir()}
    assert (release / "model.safetensors").read_bytes() == (work / "models/trained/model.safetensors").read_bytes()
    card = ModelCard.load(release / "README.md")
    metrics = json.loads((work / "metrics/eval.json").read_text())
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    result = card.data.eval_results[0]
    assert (result.metric_type, result.metric_value) == ("accuracy", metrics["accuracy"])
    assert "tokenizer(prompt, response)" in card.text and "By source:" in card.text
    assert "longer-answer-wins baseline" in card.text and "forum" in card.text
    before = (release / "README.md").read_bytes()
    evaluate(work, {})
    assert (release / "README.md").read_bytes() == before  # deterministic: no dates, no local paths


def test_the_summary_fits_a_terminal(work):
    lines = summary_lines(work / "metrics")
    assert all(len(line) <= WIDTH for line in lines)
    text = "\n".join(lines)
    assert "accuracy" in text and "longer-wins baseline" in text and "ECE" in text and "lowest sources" in text
    assert "dvc plots show" in text and "truncated" in text


def test_evaluate_precision_is_honoured_and_recorded(work, tmp_path):
    """#24: evaluate.precision sets the model body's precision; the resolved value is in metrics/eval.json."""
    scores = {}
    for precision in ("fp32", "bf16", "auto"):
        copy = shutil.copytree(work, tmp_path / precision)
        params = {"evaluate": {"batch_size": 16, "precision": precision}}
        metrics = evaluate_model(evaluate_paths(copy), build(EvaluateConfig, params), device="cpu")
        expected = resolve_precision(precision, torch.device("cpu"))
        assert metrics["precision"] == json.loads((copy / "metrics/eval.json").read_text())["precision"] == expected
        scores[precision] = [r["reward_chosen"] for r in read_jsonl(copy / "data/eval_scores.jsonl")]
    assert scores["fp32"] != scores["bf16"]
    assert scores["auto"] == scores[resolve_precision("auto", torch.device("cpu"))]
    assert scores["bf16"] == pytest.approx(scores["fp32"], abs=0.05 * max(map(abs, scores["fp32"])))
