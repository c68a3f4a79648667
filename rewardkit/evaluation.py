"""The evaluate stage's job: score the held-out pairs with the trained model, encoded exactly as in training.

Writes the metrics (pairwise accuracy over ALL pairs with ties ½, tie rate, margin, BT loss, reward mean/std, ECE,
accuracy by which side is longer, and the "longer answer wins" baseline on the same pairs), per-pair scores, and
the plot data (reward histogram, calibration curve).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from rewardkit.artifact import load_artifact
from rewardkit.config import EvaluateConfig
from rewardkit.devices import resolve_device
from rewardkit.encoding import encode_both_answers, row_margin
from rewardkit.errors import UserError
from rewardkit.inference import score_sequences
from rewardkit.io import atomic_path, read_jsonl, round_floats, write_csv, write_json
from rewardkit.metrics import pair_correct, pair_metrics, reward_histogram
from rewardkit.model import RewardModel, input_template


@dataclass(frozen=True)
class EvaluatePaths:
    pairs: Path
    model_dir: Path
    scores: Path
    metrics: Path
    histogram: Path
    calibration: Path


def score_pairs(model: RewardModel, tokenizer, max_length: int, rows: list[dict], batch_size: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of the chosen and rejected answers of `rows`; `batch_size` counts pairs."""
    enc = encode_both_answers(tokenizer, rows, max_length, input_template(model.hf.config, tokenizer))
    with tqdm(total=2 * len(rows), desc="evaluate", unit="seq", dynamic_ncols=True) as bar:
        rewards = score_sequences(model, enc.ids, tokenizer.pad_token_id, 2 * batch_size, device, bar,
                                  enc.segments)
    return rewards[:len(rows)], rewards[len(rows):]


def evaluate_model(paths: EvaluatePaths, cfg: EvaluateConfig, device: str = "auto") -> dict:
    """Score `paths.pairs` with the model in `paths.model_dir` and write every output; returns the metrics."""
    if not paths.pairs.is_file():
        raise UserError(f"{paths.pairs} not found: run `dvc repro split` first")
    rows = list(read_jsonl(paths.pairs))
    if not rows:
        raise UserError(f"{paths.pairs} is empty: raise split.eval_fraction")
    torch_device = resolve_device(device)
    model, tokenizer, meta = load_artifact(paths.model_dir)
    model.to(torch_device)
    chosen, rejected = score_pairs(model, tokenizer, meta["max_length"], rows, cfg.batch_size, torch_device)

    margins = torch.tensor([row_margin(r) for r in rows])
    length_diff = torch.tensor([len(r["chosen"]) - len(r["rejected"]) for r in rows])
    metrics, calibration_curve = pair_metrics(chosen, rejected, margins, length_diff, cfg.calibration_bins)
    correct = pair_correct(chosen, rejected)
    with atomic_path(paths.scores) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i, (row, c, r) in enumerate(zip(rows, chosen.tolist(), rejected.tolist())):
            record = {"index": i, "id": row.get("id"), "reward_chosen": round(c, 6), "reward_rejected": round(r, 6),
                      "correct": correct[i].item()}
            f.write(json.dumps(record) + "\n")
    write_csv(paths.histogram, reward_histogram(chosen, rejected))
    write_csv(paths.calibration, round_floats(calibration_curve))
    write_json(paths.metrics, round_floats(metrics))
    print(json.dumps(round_floats(metrics, 4)))
    return metrics
