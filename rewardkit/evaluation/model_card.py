"""The released model directory: the trained model's files plus a model card (README.md) written with
huggingface_hub's ModelCard: metadata (base model, library, pipeline tag, training data by name and hash, eval
metrics in model-index form) and what a colleague needs before using it. Deterministic: no dates, no paths of
this machine, so the same training and evaluation give the same bytes."""
from __future__ import annotations

import shutil
from pathlib import Path

from rewardkit.io import atomic_path

CARD_FILE = "README.md"

USAGE = {
    "text_pair": '''```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForSequenceClassification.from_pretrained("{path}").eval()
reward = model(**tokenizer(prompt, response, return_tensors="pt")).logits[0, 0]   # a text pair
```''',
    "concat": '''```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForSequenceClassification.from_pretrained("{path}").eval()
inputs = tokenizer(prompt + response + tokenizer.eos_token, return_tensors="pt")  # one text, EOS last
reward = model(**inputs).logits[0, 0]   # transformers' head reads the last non-pad token
```''',
}


def _table(rows: list[tuple], header: tuple) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _breakdown_tables(metrics: dict) -> list[str]:
    out = []
    for kind in ("by_source", "by_subset"):
        groups = metrics.get(kind)
        if groups:
            rows = [(g, v["pairs"], f"{v['accuracy']:.3f}", f"{v['baseline_longer_wins_accuracy']:.3f}",
                     f"{v['loss']:.3f}") for g, v in groups.items()]
            out += [f"By {kind.removeprefix('by_')}:", "",
                    _table(rows, ("group", "pairs", "accuracy", "longer-wins baseline", "loss")), ""]
    if metrics.get("rewardbench"):
        out += ["RewardBench sections (accuracy, ties ½):", "",
                _table([(k, f"{v:.3f}") for k, v in metrics["rewardbench"].items()], ("section", "score")), ""]
    return out


def card_text(meta: dict, metrics: dict, model_name: str) -> str:
    """The model card: YAML metadata through ModelCardData, then the body."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = [EvalResult(task_type="text-classification", task_name="pairwise preference", dataset_type="pairwise",
                          dataset_name="held-out split", dataset_split="eval", metric_type="accuracy",
                          metric_name="pairwise accuracy (ties 1/2)", metric_value=metrics["accuracy"])]
    for name, extra in metrics.get("extra_sets", {}).items():
        results.append(EvalResult(task_type="text-classification", task_name="pairwise preference",
                                  dataset_type="pairwise", dataset_name=name, metric_type="accuracy",
                                  metric_name="pairwise accuracy (ties 1/2)", metric_value=extra["accuracy"]))
    data = ModelCardData(base_model=None if meta["base_model"].startswith("scratch-") else meta["base_model"],
                         library_name="transformers", pipeline_tag="text-classification", model_name=model_name,
                         datasets=[f"train.jsonl@sha256:{meta['data_sha256'][:16]}"], eval_results=results,
                         tags=["reward-model", "bradley-terry", "rewardkit"])
    extras = [(name, m["pairs"], f"{m['accuracy']:.3f}", f"{m['baseline_longer_wins_accuracy']:.3f}")
              for name, m in metrics.get("extra_sets", {}).items()]
    body = [
        f"# {model_name}", "",
        f"A pairwise (Bradley–Terry) reward model fine-tuned from `{meta['base_model']}` with rewardkit: higher "
        "reward = the response is more likely preferred. Trained on `train.jsonl` (sha256 "
        f"`{meta['data_sha256']}`).", "",
        "## How to call it", "",
        f"Input: `{meta['input_format']}`" + (" with token_type_ids (0 prompt, 1 response)" if meta.get("segment_ids")
                                              else "") + f", at most {meta['max_length']} tokens; truncation: "
        f"{meta['truncation']}. Conversations are rendered with the "
        + ("tokenizer's chat template" if meta.get("rendering") == "chat_template" else
           "plain template `User: ...\\nAssistant:`") + ".", "",
        USAGE[meta.get("input_kind", "text_pair")].format(path="<this directory>"), "",
        f"Pooling: `{meta['pooling']}`" + (" (only rewardkit's loader applies it; transformers pools the first "
                                           "token)" if meta["pooling"] == "mean" else
                                           " (the model's own head: transformers computes the same reward)") + ".",
        "For prompts longer than the budget, use `rewardkit.RewardScorer`, which cuts the prompt from the left as in "
        "training (Hugging Face's tokenizer truncates differently).", "",
        f"Rewards of the training pairs: mean {meta['reward_mean']:.4f}, std {meta['reward_std']:.4f} "
        "(`RewardScorer(...).score(..., normalize=True)` gives (r − mean) / std).", "",
        "## Evaluation (held-out pairs, prompts disjoint from training)", "",
        _table([("pairs", metrics["pairs"]), ("accuracy (ties ½)", f"{metrics['accuracy']:.4f}"),
                ("longer-answer-wins baseline", f"{metrics['baseline_longer_wins_accuracy']:.4f}"),
                ("BT loss", f"{metrics['loss']:.4f}"), ("ECE", f"{metrics['ece']:.4f}"),
                ("mean margin r⁺ − r⁻", f"{metrics['mean_margin']:.4f}")], ("metric", "value")), "",
        "Length bias: accuracy where the chosen answer is the longer one "
        f"{_fmt(metrics.get('accuracy_chosen_longer'))} ({metrics.get('pairs_chosen_longer', 0)} pairs), where it is "
        f"the shorter one {_fmt(metrics.get('accuracy_chosen_shorter'))} ({metrics.get('pairs_chosen_shorter', 0)} "
        "pairs).", "",
        *_breakdown_tables(metrics),
    ]
    if extras:
        body += ["## Extra evaluation sets", "",
                 _table(extras, ("set", "pairs", "accuracy", "longer-wins baseline")), ""]
        for name, m in metrics["extra_sets"].items():
            tables = _breakdown_tables(m)
            if tables:
                body += [f"### {name}", "", *tables]
    return str(ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(body)))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def write_release(trained_dir: Path, release_dir: Path, meta: dict, metrics: dict) -> None:
    """Copy the trained model's files to `release_dir` and add the model card, atomically."""
    with atomic_path(release_dir, is_dir=True) as tmp:
        for file in sorted(Path(trained_dir).iterdir()):
            if file.is_file() and file.name != CARD_FILE:
                shutil.copy2(file, tmp / file.name)
            elif file.is_dir():  # a LoRA adapter beside the merged model (rewardkit.modeling.artifact.ADAPTER_DIR)
                shutil.copytree(file, tmp / file.name)
        (tmp / CARD_FILE).write_text(card_text(meta, metrics, Path(release_dir).name) + "\n", encoding="utf-8")
